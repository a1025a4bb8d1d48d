"""Driving the real helm binary against the chart, and reading what it renders.

helm runs with its own cache/config/data directories (no state from the user's home), and
every failure raises HelmError carrying helm's output so a failing test shows why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "acme-gateway"

Manifest = dict[str, Any]


class HelmError(RuntimeError):
    """helm exited non-zero; `.output` is its stdout + stderr."""

    def __init__(self, args: Sequence[str], code: int, output: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed ({code}):\n{output}")
        self.output = output


@dataclass
class Helm:
    """One helm binary with isolated state directories."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            **self.extra_env,
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        else:
            env.pop("KUBECONFIG", None)
        return env

    def _exec(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )

    def run(self, *args: str, timeout: float = 120) -> str:
        """helm's stdout; raises HelmError on failure."""
        proc = self._exec(args, timeout)
        if proc.returncode != 0:
            raise HelmError(args, proc.returncode, proc.stdout + proc.stderr)
        return proc.stdout

    def refused(self, *args: str, timeout: float = 120) -> str:
        """helm's output for a command that must fail; AssertionError if it succeeds."""
        proc = self._exec(args, timeout)
        assert proc.returncode != 0, f"helm {' '.join(args)} unexpectedly succeeded:\n{proc.stdout}"
        return proc.stdout + proc.stderr

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.binary, self.home, kubeconfig, dict(self.extra_env))


def write_values(directory: Path, name: str, values: Mapping[str, Any]) -> Path:
    """A values file for helm -f."""
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    return path


def parse_manifests(text: str) -> list[Manifest]:
    """Every non-empty YAML document of helm's output."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc]


def find(docs: Sequence[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """Objects of one kind (and name)."""
    return [
        d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, got {[d['metadata'] for d in found]}"
    )
    return found[0]


def containers(deployment: Manifest) -> dict[str, Manifest]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def flag(container: Manifest, name: str) -> list[str]:
    """Values of `--name=value` arguments of a container."""
    prefix = f"--{name}="
    return [a[len(prefix) :] for a in container.get("args", []) if a.startswith(prefix)]
