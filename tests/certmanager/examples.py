"""The README's cert-manager YAML (docs/examples/cert-manager/), rendered the way the README says.

The files carry `${VAR}` placeholders that the README fills with `envsubst`; the tests fill
them with string.Template and `kubectl apply` the result, so what the tests prove is what
a user applies.
"""

from __future__ import annotations

import base64
import string
from pathlib import Path
from typing import Any

import yaml

from tests.infra.kube import ControlPlane

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "cert-manager"


def render(name: str, **values: str) -> str:
    """The example file with every placeholder filled; a missing value is an error."""
    return string.Template((EXAMPLES / name).read_text()).substitute(values)


def documents(name: str, **values: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(name, **values)) if doc]


def apply(cp: ControlPlane, namespace: str, name: str, **values: str) -> None:
    """`envsubst < NAME | kubectl apply -n NAMESPACE -f -`."""
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=render(name, **values))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
