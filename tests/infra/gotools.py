"""Paths to the Go test clients (cert-manager controller, lego, helm), building them if needed.

The binaries come from tools/go-tools/build.sh, which builds pinned versions from the Go
module proxy into ~/.cache/acme-gateway/<tool>-<version>/ (a warm call returns at once).
Any failure raises GoToolError with the build's output: a test needing one of these tools
must fail loudly, never skip.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "go-tools" / "build.sh"
BUILD_TIMEOUT = 3 * 3600  # seconds: a cold cert-manager build on 2 busy cores is slow


class GoToolError(RuntimeError):
    """A Go tool could not be built or is not where the build script said."""


@functools.cache
def _build(target: str) -> dict[str, Path]:
    """Run the build script for one target and return its NAME=path lines (cached per process)."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), target],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GoToolError(f"{BUILD_SCRIPT} {target} did not complete: {exc}") from exc
    if proc.returncode != 0:
        raise GoToolError(
            f"{BUILD_SCRIPT} {target} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-8000:]}{proc.stdout[-2000:]}"
        )
    paths: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            paths[name.strip()] = Path(value.strip())
    return paths


def _path(target: str, name: str) -> Path:
    path = _build(target).get(name)
    if path is None or not path.exists():
        raise GoToolError(f"{BUILD_SCRIPT} {target} did not produce {name} (got {path})")
    return path


def ensure_certmanager() -> Path:
    """The cert-manager controller binary (tools/certmanager, version pinned in its go.mod)."""
    return _path("certmanager", "CERTMANAGER_BIN")


def certmanager_crds_dir() -> Path:
    """Directory of cert-manager's CRD YAML files, copied from the module's deploy/crds."""
    crds = _path("certmanager", "CERTMANAGER_CRDS")
    if not any(crds.glob("*.yaml")):
        raise GoToolError(f"no CRD files in {crds}")
    return crds


def ensure_lego() -> Path:
    """The lego ACME client binary."""
    return _path("lego", "LEGO_BIN")


def ensure_helm() -> Path:
    """The helm v3 binary."""
    return _path("helm", "HELM_BIN")
