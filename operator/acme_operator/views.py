"""What the operator-wide sweeps need to know about each object (kopf index values).

Kopf keeps these current from the watch, so a sweep over 10,000 objects reads memory, not
the API server, and patches only the objects whose status is out of date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acme_operator.constants import API_VERSION, GROUP

ANNOTATION_PREFIX = f"{GROUP}/"  # ours (rotation requests); kopf's and others' are not kept


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@dataclass(frozen=True)
class ObjectView:
    """One AcmeRegistration or AllowedDomain as last seen by the watch."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int | None
    resource_version: str
    created: str
    spec: dict[str, Any]
    annotations: dict[str, str]
    status: dict[str, Any]

    @classmethod
    def of(
        cls,
        kind: str,
        namespace: str,
        name: str,
        uid: str,
        meta: Mapping[str, Any],
        spec: Mapping[str, Any],
        status: Mapping[str, Any],
    ) -> ObjectView:
        return cls(
            kind=kind,
            namespace=namespace,
            name=name,
            uid=uid,
            generation=meta.get("generation"),
            resource_version=str(meta.get("resourceVersion") or ""),
            created=str(meta.get("creationTimestamp") or ""),
            spec=_plain(spec),
            annotations={
                str(k): str(v)
                for k, v in (meta.get("annotations") or {}).items()
                if str(k).startswith(ANNOTATION_PREFIX)
            },
            # Not status.kopf (kopf's own bookkeeping): 10,000 copies of it add up.
            status={k: v for k, v in (status or {}).items() if k != "kopf"},
        )

    def involved(self) -> dict[str, Any]:
        """Enough of the object for a core/v1 Event about it."""
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }
