"""What every handler shares: the store, the settings, the Kubernetes client, per-registration locks.

Kopf hands it to handlers through `memo`; registrations are written under a per-name lock so
a domain change and a registration change never interleave a read-modify-write of one row.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import kopf

from acme_operator.config import OperatorConfig
from acme_operator.kube import KubeClient
from acme_server.store.operator_facade import OperatorStore


@dataclass
class OperatorContext:
    store: OperatorStore
    config: OperatorConfig
    kube: KubeClient
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def lock(self, store_name: str) -> asyncio.Lock:
        return self.locks[store_name]


def from_memo(memo: kopf.Memo) -> OperatorContext:
    ctx = memo["ctx"] if "ctx" in memo else None
    if not isinstance(ctx, OperatorContext):
        raise RuntimeError("operator context missing from kopf memo")
    return ctx


def store_name(namespace: str, name: str) -> str:
    """The store's registration name for a custom resource (the CRD contract)."""
    return f"{namespace}/{name}"
