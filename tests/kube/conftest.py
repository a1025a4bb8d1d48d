"""Fixtures for tests against the real Kubernetes control plane (tests/infra/kube.py).

The binaries come from tools/k8s/build.sh; a cold build takes long, so CI runs that script
before pytest. If the build or start fails, every test here errors loudly (never skips).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator

import pytest

from tests.infra.kube import ControlPlane, ControlPlaneError, build_binaries

_started: list[ControlPlane] = []


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane with crds/ installed: `.kubeconfig`, `.kubectl(...)`, `.env()`."""
    try:
        binaries = build_binaries()
    except ControlPlaneError as exc:
        pytest.fail(f"cannot build the test control plane:\n{exc}", pytrace=False)
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
