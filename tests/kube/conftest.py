"""Fixtures for tests against the real Kubernetes control plane (tests/infra/kube.py).

The binaries come from tools/k8s/build.sh (about 10 minutes cold, 1 s warm). It runs once after
collection, outside any test's timeout, when a collected test uses the control plane. If the
build or start fails, every such test errors loudly (never skips).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator

import pytest

from tests.infra.kube import Binaries, ControlPlane, ControlPlaneError, build_binaries

_started: list[ControlPlane] = []
_built: list[Binaries | ControlPlaneError] = []


def _binaries() -> Binaries | ControlPlaneError:
    """Build (or find cached) binaries once per pytest process."""
    if not _built:
        try:
            _built.append(build_binaries())
        except ControlPlaneError as exc:
            _built.append(exc)
    return _built[0]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build before the tests run, so a cold build does not count against a test's timeout."""
    if any("control_plane" in getattr(item, "fixturenames", ()) for item in session.items):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "kube: checking/building control plane binaries (tools/k8s/build.sh)"
            )
        _binaries()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane with crds/ installed: `.kubeconfig`, `.kubectl(...)`, `.env()`."""
    if _started:  # tests/chaos started one already (it shares these fixtures): reuse it
        yield _started[0]
        return
    binaries = _binaries()
    if isinstance(binaries, ControlPlaneError):
        pytest.fail(f"cannot build the test control plane:\n{binaries}", pytrace=False)
    cp = ControlPlane(binaries)
    try:
        cp.start(tmp_path_factory.mktemp("kube"))
    except ControlPlaneError as exc:
        pytest.fail(f"cannot start the test control plane:\n{exc}", pytrace=False)
    _started.append(cp)
    try:
        yield cp
    finally:
        _started.remove(cp)
        cp.stop()


@pytest.fixture
def kube_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/kube needs the control plane: mark it `kube`."""
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kube)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the control-plane logs to every failed test that used it."""
    report = yield
    if report.failed and _started and "control_plane" in getattr(item, "fixturenames", ()):
        report.sections.append(("control plane logs", _started[0].logs_text()))
    return report
