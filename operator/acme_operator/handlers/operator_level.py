"""Operator-wide handlers: settings, login, and the liveness probe."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from acme_operator.config import OperatorConfig
from acme_operator.constants import (
    DOMAINS,
    FINALIZER,
    GROUP,
    REGISTRATIONS,
    VERSION,
)
from acme_operator.context import from_memo
from acme_operator.kube import kopf_session, load_configuration
from acme_operator.persistence import StatusFirstDiffBase, StatusFirstProgress

WATCHED = (REGISTRATIONS, DOMAINS)
# Kopf's connections to the API server (two of them hold the watch streams).
KOPF_CONNECTIONS = 48


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # Kopf's bookkeeping lives in status.kopf (one status PATCH per handled change); the
        # annotations older versions wrote under their own prefix are still read, and kopf
        # ignores every annotation under it when diffing (acme-gateway.io/* ones must
        # trigger updates).
        settings.persistence.progress_storage = StatusFirstProgress()
        settings.persistence.diffbase_storage = StatusFirstDiffBase()
        # No settings.batching.worker_limit: with indices, kopf's first workers wait until
        # every object is indexed, which a limit below the object count never lets happen
        # (a deadlock at start). API concurrency is bounded by the connection pools instead.
        # One operator per store; no peering CRDs to install.
        settings.peering.standalone = True
        # No cluster-wide watching of CRDs and namespaces (it would need cluster-scoped RBAC):
        # our two CRDs must exist when the operator starts (checked below), and --namespace
        # takes plain names.
        settings.scanning.disabled = True
        # Events come from explicit kopf.event()/info()/warn() calls only.
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        # Every API call kopf makes is bounded: connecting, and each non-watch request.
        settings.watching.connect_timeout = 10
        settings.networking.connect_timeout = 10
        # The whole request, waiting for one of the KOPF_CONNECTIONS included: 10,000 objects
        # at once queue there, and a timeout only makes kopf retry work already done.
        settings.networking.request_timeout = 300

    @kopf.on.startup(id="check_crds", registry=registry)
    async def check_crds(memo: kopf.Memo, **_: Any) -> None:
        """Fail fast (the pod restarts) instead of idling when the CRDs are not installed."""
        missing = await from_memo(memo).kube.missing_resources(GROUP, VERSION, WATCHED)
        if missing:
            raise kopf.PermanentError(
                f"the API server does not serve {', '.join(missing)} ({GROUP}/{VERSION}): "
                "install the CRDs first (kubectl apply -f crds/)"
            )

    @kopf.on.login(id="login", registry=registry)
    async def login(memo: kopf.Memo, **_: Any) -> kopf.AiohttpSession:
        """In cluster via the ServiceAccount, else the kubeconfig (the kubernetes client's
        rules), over a session with a bounded number of connections (KOPF_CONNECTIONS),
        behind the leader fence when leader election is on."""
        cfg = load_configuration()
        traces = from_memo(memo).traces or None
        return kopf.AiohttpSession(
            server=str(cfg.host), aiohttp_session=kopf_session(cfg, KOPF_CONNECTIONS, traces)
        )

    @kopf.on.probe(id="store", registry=registry)
    async def store_reachable(memo: kopf.Memo, **_: Any) -> str:
        """Liveness: the store answers (the Kubernetes watch is kopf's own concern)."""
        await from_memo(memo).store.ping()
        return "ok"
