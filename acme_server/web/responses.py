"""Response helpers; the middleware adds Replay-Nonce and the index Link to all of them."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def acme_json(
    request: web.Request,
    body: dict[str, Any],
    *,
    status: int = 200,
    location: str | None = None,
    links: list[str] | None = None,
    retry_after: int | None = None,
) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
    )
    if location:
        response.headers["Location"] = location
    for link in links or ():
        response.headers.add("Link", link)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def link(url: str, rel: str) -> str:
    return f'<{url}>;rel="{rel}"'
