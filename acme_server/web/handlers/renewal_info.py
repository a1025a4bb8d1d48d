"""GET {renewalInfo}/{certID} (RFC 9773 4.1): when a certificate should be renewed."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.revocation import ari
from acme_server.timefmt import rfc3339
from acme_server.web.responses import acme_json
from acme_server.web.state import state_of


async def renewal_info(request: web.Request) -> web.Response:
    state = state_of(request)
    ident = ari.parse_cert_id(request.match_info["cert_id"])
    stored = await state.db.read(lambda conn: ari.find_certificate(conn, ident))
    if stored is None:
        raise AcmeProblem(
            ProblemType.MALFORMED, "no certificate with this certID was issued here", status=404
        )
    window = ari.suggested_window(stored, datetime.now(UTC))
    body = {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}
    retry = int(state.settings.ari_retry_after.total_seconds())
    return acme_json(request, body, retry_after=retry)
