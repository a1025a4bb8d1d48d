"""Fixtures for the Helm chart tests: the pinned helm binary and the test control plane.

helm is built from the Go module proxy by tools/go-tools/build.sh (tests/infra/gotools.py);
if it cannot be built every test here fails loudly.
"""

from __future__ import annotations

import pytest

from tests.helm.chart import Helm
from tests.infra.gotools import GoToolError, ensure_helm

# The session control plane (etcd + kube-apiserver + kube-controller-manager, crds/ installed)
# and its failure-log hook are shared with tests/kube.
from tests.kube.conftest import control_plane, pytest_runtest_makereport  # noqa: F401


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm without cluster access (lint, template)."""
    try:
        binary = ensure_helm()
    except GoToolError as exc:
        pytest.fail(f"cannot build helm:\n{exc}", pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs helm; those using the control plane are `kube` tests too."""
    for item in items:
        if "tests/helm/" in item.nodeid:
            item.add_marker(pytest.mark.helm)
            if "control_plane" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.kube)
