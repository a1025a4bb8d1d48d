"""Cross-cutting HTTP behaviour: problem documents for every error, nonce and index headers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from acme_server.domain.problems import AcmeProblem, ProblemType, problem_json
from acme_server.web.responses import link
from acme_server.web.state import state_of

log = logging.getLogger("acme_server.web")

# Operational endpoints, not ACME resources: no nonce or index link there.
_PLAIN_PATHS = frozenset({"/metrics", "/healthz"})

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
    except Exception:
        log.exception("internal error handling %s %s", request.method, request.path)
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
        response.headers.add("Link", link(state.urls.directory, "index"))
    return response


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
