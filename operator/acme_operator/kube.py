"""The few Kubernetes API calls the operator makes itself (Secrets, registration look-ups).

The `kubernetes` client is synchronous: every call runs in a worker thread so the kopf
event loop never blocks. Objects travel as plain dicts (API field names), like kopf bodies.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from acme_operator.constants import GROUP, REGISTRATIONS, VERSION

Body = dict[str, Any]
# (connect, read) seconds for every call this module makes: a stuck API server must not
# hold a worker thread forever.
TIMEOUT = (10, 30)


def load_configuration() -> kubernetes.client.Configuration:
    """In cluster via the ServiceAccount, otherwise KUBECONFIG / ~/.kube/config."""
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=cfg)
    return cfg


class KubeClient:
    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        self._api = kubernetes.client.ApiClient(configuration)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)

    def close(self) -> None:
        self._api.close()

    def _plain(self, obj: Any) -> Body:
        out = self._api.sanitize_for_serialization(obj)
        assert isinstance(out, dict)
        return out

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        def call() -> Body | None:
            try:
                return self._plain(
                    self._core.read_namespaced_secret(name, namespace, _request_timeout=TIMEOUT)
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        return await asyncio.to_thread(call)

    async def create_secret(self, namespace: str, body: Any) -> Body:
        """Raises ApiException(409) when it already exists."""
        return await asyncio.to_thread(
            lambda: self._plain(
                self._core.create_namespaced_secret(namespace, body, _request_timeout=TIMEOUT)
            )
        )

    async def replace_secret(self, namespace: str, name: str, body: Any) -> Body:
        return await asyncio.to_thread(
            lambda: self._plain(
                self._core.replace_namespaced_secret(
                    name, namespace, body, _request_timeout=TIMEOUT
                )
            )
        )

    async def patch_secret(self, namespace: str, name: str, patch: Body) -> Body:
        return await asyncio.to_thread(
            lambda: self._plain(
                self._core.patch_namespaced_secret(name, namespace, patch, _request_timeout=TIMEOUT)
            )
        )

    async def missing_resources(
        self, group: str, version: str, plurals: tuple[str, ...]
    ) -> list[str]:
        """Which of `plurals` API discovery does not list (all of them if the group is absent)."""

        def call() -> list[str]:
            try:
                found = self._custom.get_api_resources(group, version, _request_timeout=TIMEOUT)
            except ApiException as exc:
                if exc.status == 404:
                    return list(plurals)
                raise
            served = {r.name for r in found.resources or []}
            return [p for p in plurals if p not in served]

        return await asyncio.to_thread(call)

    async def get_registration(self, namespace: str, name: str) -> Body | None:
        def call() -> Body | None:
            try:
                obj = self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, REGISTRATIONS, name, _request_timeout=TIMEOUT
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            assert isinstance(obj, dict)
            return obj

        return await asyncio.to_thread(call)

    async def post_event(
        self, involved: Body, *, type_: str, reason: str, message: str, component: str
    ) -> None:
        """A core/v1 Event about `involved`, for code that runs outside kopf's handlers."""
        meta = involved.get("metadata", {})
        now = datetime.now(UTC)
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name', 'object')}.",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await asyncio.to_thread(
            lambda: self._core.create_namespaced_event(
                meta["namespace"], body, _request_timeout=TIMEOUT
            )
        )
