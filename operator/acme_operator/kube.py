"""The few Kubernetes API calls the operator makes itself (Secrets, registration look-ups).

Asynchronous over aiohttp (which kopf uses too), with the credentials the `kubernetes`
package loads: its synchronous client ran every call in a thread, and validated each one
with pydantic; at thousands of calls a second that was most of the operator's CPU and a
hundred MiB of its memory. Objects travel as plain dicts (API field names), like kopf
bodies; failures raise the `kubernetes` ApiException (status, reason) as before.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from acme_operator.constants import GROUP, REGISTRATIONS, VERSION

Body = dict[str, Any]
# (connect, read) seconds for every call this module makes: a stuck API server must not
# hold a handler forever.
TIMEOUT = (10, 30)
# Metadata only (no data) for list/watch: the revoke watch never holds Secret contents.
META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
META_ONE = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
# Server-side end of one watch request; the client's read timeout is longer.
WATCH_SECONDS = 60
# Connections to the API server at once (requests beyond wait for one).
CONNECTIONS = 32
# The whole of one call, waiting for a pooled connection included.
QUEUED_TIMEOUT = 300


def load_configuration() -> kubernetes.client.Configuration:
    """In cluster via the ServiceAccount, otherwise KUBECONFIG / ~/.kube/config."""
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=cfg)
    return cfg


def ssl_context(cfg: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the loaded configuration says: its CA, client certificate, verification."""
    if not str(cfg.host).startswith("https"):
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


def bearer(cfg: kubernetes.client.Configuration) -> str | None:
    """The Authorization header value ("Bearer ..."), if the credentials are a token."""
    token = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
    return str(token) if token else None


def kopf_session(
    cfg: kubernetes.client.Configuration,
    limit: int,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """The session kopf uses (login handler): bounded connections. Kopf's own session has
    no limit, so a burst of 10,000 objects opened thousands of TLS connections at once.
    `trace_configs`: the leader fence (leader.py), when leader election is on."""
    token = bearer(cfg)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context(cfg), limit=limit),
        headers={"Authorization": token} if token else None,
        trace_configs=trace_configs,
    )


class KubeClient:
    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self._cfg = configuration
        self._traces = trace_configs
        self._base = str(configuration.host).rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context(self._cfg), limit=CONNECTIONS),
                # Connecting and each read are bounded; waiting for a free pooled connection
                # is not (a burst of 10,000 objects queues there, and a timeout would only
                # make the client retry work the API server may already have done).
                timeout=aiohttp.ClientTimeout(
                    total=QUEUED_TIMEOUT, sock_connect=TIMEOUT[0], sock_read=TIMEOUT[1]
                ),
                trace_configs=self._traces,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close(self) -> None:
        """Nothing to do synchronously (see aclose)."""

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = bearer(self._cfg)  # refreshes ServiceAccount tokens
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> Body | None:
        """The response object; None for 404 when `missing_ok`; ApiException otherwise."""
        headers = self._headers(content_type if body is not None else None)
        async with self.session().request(
            method, self._base + path, json=body, headers=headers
        ) as resp:
            if resp.status == 404 and missing_ok:
                return None
            if resp.status >= 400:
                text = await resp.text()
                raise ApiException(status=resp.status, reason=resp.reason, body=text)
            out = await resp.json()
        assert isinstance(out, dict)
        return out

    @staticmethod
    def _secret_path(namespace: str, name: str | None = None) -> str:
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets"
        return path if name is None else f"{path}/{quote(name)}"

    @staticmethod
    def _custom_path(namespace: str, plural: str, name: str, sub: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{plural}/{quote(name)}"
        return path + (f"/{sub}" if sub else "")

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        return await self._call("GET", self._secret_path(namespace, name), missing_ok=True)

    async def create_secret(self, namespace: str, body: Any) -> Body:
        """Raises ApiException(409) when it already exists."""
        out = await self._call("POST", self._secret_path(namespace), body)
        assert out is not None
        return out

    async def replace_secret(self, namespace: str, name: str, body: Any) -> Body:
        out = await self._call("PUT", self._secret_path(namespace, name), body)
        assert out is not None
        return out

    async def patch_secret(self, namespace: str, name: str, patch: Body) -> Body:
        out = await self._call(
            "PATCH",
            self._secret_path(namespace, name),
            patch,
            content_type="application/strategic-merge-patch+json",
        )
        assert out is not None
        return out

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Body
    ) -> str | None:
        """Merge-patch `status` of one of our custom objects: the new resourceVersion, None
        when the object is gone."""
        out = await self._call(
            "PATCH",
            self._custom_path(namespace, plural, name, "status"),
            {"status": status},
            content_type="application/merge-patch+json",
            missing_ok=True,
        )
        return None if out is None else str(out["metadata"]["resourceVersion"])

    async def missing_resources(
        self, group: str, version: str, plurals: tuple[str, ...]
    ) -> list[str]:
        """Which of `plurals` API discovery does not list (all of them if the group is absent)."""
        found = await self._call("GET", f"/apis/{group}/{version}", missing_ok=True)
        if found is None:
            return list(plurals)
        served = {r.get("name") for r in found.get("resources") or []}
        return [p for p in plurals if p not in served]

    async def get_registration(self, namespace: str, name: str) -> Body | None:
        return await self._call(
            "GET", self._custom_path(namespace, REGISTRATIONS, name), missing_ok=True
        )

    async def post_event(
        self, involved: Body, *, type_: str, reason: str, message: str, component: str
    ) -> None:
        """A core/v1 Event about `involved`, for code that runs outside kopf's handlers."""
        meta = involved.get("metadata", {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
        await self._call("POST", f"/api/v1/namespaces/{quote(meta['namespace'])}/events", body)

    async def list_secret_metadata(
        self, namespace: str | None, selector: str, cont: str | None = None
    ) -> Body:
        """One page (500) of Secrets' metadata matching `selector`, in one namespace or all."""
        params = {"labelSelector": selector, "limit": "500"}
        if cont:
            params["continue"] = cont
        path = "/api/v1/secrets" if namespace is None else self._secret_path(namespace)
        headers = {**self._headers(), "Accept": META_LIST}
        async with self.session().get(self._base + path, params=params, headers=headers) as resp:
            if resp.status >= 400:
                raise ApiException(status=resp.status, reason=resp.reason, body=await resp.text())
            out = await resp.json()
        assert isinstance(out, dict)
        return out

    async def watch_secret_metadata(
        self, namespace: str | None, selector: str, resource_version: str
    ) -> AsyncIterator[Body]:
        """Watch events ({type, object}) of Secrets' metadata from `resource_version`, until
        the server ends the request (WATCH_SECONDS); bookmarks included."""
        params = {
            "labelSelector": selector,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        path = "/api/v1/secrets" if namespace is None else self._secret_path(namespace)
        headers = {**self._headers(), "Accept": META_ONE}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=TIMEOUT[0], sock_read=WATCH_SECONDS + TIMEOUT[1]
        )
        async with self.session().get(
            self._base + path, params=params, headers=headers, timeout=timeout
        ) as resp:
            if resp.status >= 400:
                raise ApiException(status=resp.status, reason=resp.reason, body=await resp.text())
            async for line in resp.content:
                if line.strip():
                    event = json.loads(line)
                    assert isinstance(event, dict)
                    yield event
