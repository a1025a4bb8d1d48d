"""Cross-cutting HTTP behaviour: problem documents for every error, nonce and index headers;
a request ID and log context for every request, its metrics, and the one-line access log."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from acme_server import logs, metrics
from acme_server.domain.problems import AcmeProblem, ProblemType, problem_json
from acme_server.store.availability import RETRY_AFTER_SECONDS, describe, store_unavailable
from acme_server.web.draining import DRAINING_KEY
from acme_server.web.responses import link
from acme_server.web.state import state_of

log = logging.getLogger("acme_server.web")

# Operational endpoints, not ACME resources: no nonce or index link there.
_PLAIN_PATHS = frozenset({"/healthz"})

REQUEST_ID_HEADER = "X-Request-Id"
_CONTEXT_KEY = web.RequestKey("log_context", dict)
_ROUTE_KEY = web.RequestKey("route", str)
# Path parameters worth having in every log line of a request (all random IDs, never names).
_ID_PARAMS = {
    "account_id": "account",
    "order_id": "order",
    "authz_id": "authz",
    "challenge_id": "challenge",
    "cert_id": "cert",
}

# Answers given before the body was read to its end: the connection cannot be reused.
_UNREAD_BODY_STATUSES = frozenset({408, 413})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem_response(doc: dict[str, object], status: int, headers: dict[str, str]) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(doc).encode(),
        content_type="application/problem+json",
    )
    for name, value in headers.items():
        response.headers.add(name, value)
    return response


def route_of(request: web.Request) -> str:
    """The route pattern (`/acme/order/{order_id}`), never the path: a bounded label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: a fresh request ID and log context, the request's metrics, `X-Request-Id`.

    The ID is ours (random), never taken from the client, so it cannot be forged to blur
    two requests together; the client gets it back to quote to an operator."""
    request_id = secrets.token_hex(8)
    route = route_of(request)
    ids = {_ID_PARAMS[k]: v for k, v in request.match_info.items() if k in _ID_PARAMS}
    draining = request.app.get(DRAINING_KEY)
    if draining is not None:
        draining.busy.add(request.protocol)
    started = time.perf_counter()
    with logs.scope(request_id=request_id, **ids):
        try:
            response = await handler(request)
        finally:
            request[_CONTEXT_KEY] = dict(logs.current())  # for the access log, after this
            request[_ROUTE_KEY] = route
            if draining is not None:
                draining.busy.discard(request.protocol)
    if draining is not None and draining.stopping:
        response.force_close()  # shutting down: answer, then close
    count, seconds = metrics.request_series(
        route, metrics.method_label(request.method), response.status
    )
    count.inc()
    seconds.observe(time.perf_counter() - started)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def acme_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = state_of(request)
    try:
        response = await handler(request)
    except AcmeProblem as problem:
        response = _problem_response(problem.to_json(), problem.status, problem.headers)
        if problem.status in _UNREAD_BODY_STATUSES:
            response.force_close()  # the rest of the body is not worth reading
    except web.HTTPException as exc:
        response = _http_exception_problem(exc)
    except Exception as exc:
        if store_unavailable(exc):
            response = _store_unavailable(request, exc)
        else:
            log.exception("internal error handling %s %s", request.method, route_of(request))
            response = _problem_response(
                problem_json(
                    ProblemType.SERVER_INTERNAL,
                    "the server hit an internal error; try again later",
                    500,
                ),
                500,
                {"Retry-After": "5"},
            )
    if request.path not in _PLAIN_PATHS:
        response.headers["Replay-Nonce"] = state.nonces.issue()
        metrics.NONCES_ISSUED.inc()
        response.headers.add("Link", link(state.urls.directory, "index"))
    return response


def _store_unavailable(request: web.Request, exc: BaseException) -> web.Response:
    """The database is unreachable or restarting: a temporary condition, so 503 with
    `Retry-After` (RFC 9110 15.6.4), which ACME clients retry, and one log line, no traceback.
    Nothing of the request was committed unless its commit itself failed, in which case
    repeating it finds the resource in its new state (every ACME POST can be repeated)."""
    log.warning(
        "store unavailable handling %s %s: %s", request.method, route_of(request), describe(exc)
    )
    doc = problem_json(
        ProblemType.SERVER_INTERNAL,
        "the server's database is temporarily unavailable; retry after the Retry-After delay",
        503,
    )
    return _problem_response(doc, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _http_exception_problem(exc: web.HTTPException) -> web.StreamResponse:
    """Turn aiohttp's own errors (404, 405, 413) into ACME problem documents."""
    if exc.status < 400:
        return exc
    headers: dict[str, str] = {}
    if exc.status == 405:
        allow = exc.headers.get("Allow", "POST")
        headers["Allow"] = allow
        detail = f"method not allowed here; use {allow} (POST-as-GET for reading resources)"
    elif exc.status == 404:
        detail = "no such resource"
    elif exc.status == 413:
        detail = "request body is too large"
    else:
        detail = exc.reason
    return _problem_response(
        problem_json(ProblemType.MALFORMED, detail, exc.status), exc.status, headers
    )


_MAX_LOGGED_PATH = 256


class AccessLogger(AbstractAccessLogger):
    """One line per request, replacing aiohttp's: method, path and route pattern, status,
    duration, bytes, client address and the request's context (its ID, and account, order
    and registration where known)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        context = request.get(_CONTEXT_KEY)  # absent when aiohttp answered before routing
        route = request.get(_ROUTE_KEY, "unrouted")
        # The raw (still percent-encoded) path: no decoded line break can end up in a line.
        path = request.raw_path.partition("?")[0]
        if len(path) > _MAX_LOGGED_PATH:
            path = path[:_MAX_LOGGED_PATH] + "..."
        self.logger.info(
            "%s %s %d %.1fms %dB",
            request.method,
            path,
            response.status,
            time * 1000,
            response.body_length,
            extra={
                "context": context or {},
                "method": request.method,
                "route": route,
                "path": path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "bytes": response.body_length,
                "remote": request.remote,
            },
        )
