"""A real cluster for the whole session: control plane + one node + our image imported.

Set up once (tests/infra/cluster.py): binaries and the image are cached builds (cold: see
docs/helm.md), the node starts in seconds. If anything cannot be built or started, every
test here fails loudly with the reason (never skips). Failures print the Pods' state, logs
and events of the cluster.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.infra.cluster import Cluster
from tests.infra.gotools import GoToolError
from tests.infra.images import ImageError
from tests.infra.kube import ControlPlaneError

_clusters: list[Cluster] = []


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's cluster; tests install releases into their own namespaces."""
    made = Cluster()
    try:
        made.start(tmp_path_factory.mktemp("cluster"))
    except (ControlPlaneError, GoToolError, ImageError) as exc:
        pytest.fail(f"cannot start the test cluster with a real node:\n{exc}", pytrace=False)
    _clusters.append(made)
    try:
        yield made
    finally:
        _clusters.remove(made)
        made.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in item.nodeid:
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.kube)
            item.add_marker(pytest.mark.helm)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test, attach the cluster's Pods, logs and events to the report."""
    report = yield
    if report.failed and _clusters and "cluster" in getattr(item, "fixturenames", ()):
        try:
            report.sections.append(("cluster", _clusters[0].diagnostics()))
        except Exception as exc:  # diagnostics must never hide the real failure
            report.sections.append(("cluster", f"(diagnostics failed: {exc})"))
    return report
