"""RFC 8555 problem documents: the only way an ACME client ever hears about an error."""

from __future__ import annotations

from typing import Any

ERROR_NS = "urn:ietf:params:acme:error:"

# Default HTTP status per ACME error type (RFC 8555 section 6.7 and common practice).
_STATUS = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 403,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 403,
    "incorrectResponse": 400,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
}


class AcmeProblem(Exception):
    """Raised anywhere in request handling; the web layer renders it as problem+json."""

    def __init__(
        self,
        type_: str,
        detail: str,
        *,
        status: int | None = None,
        subproblems: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.type = type_
        self.detail = detail
        self.status = status or _STATUS.get(type_, 400)
        self.subproblems = subproblems
        self.headers = headers or {}
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        return problem_json(self.type, self.detail, self.status, self.subproblems, self.extra)


def problem_json(
    type_: str,
    detail: str,
    status: int | None = None,
    subproblems: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": ERROR_NS + type_,
        "detail": detail,
        "status": status or _STATUS.get(type_, 400),
    }
    if subproblems:
        doc["subproblems"] = subproblems
    if extra:
        doc.update(extra)
    return doc


def identifier_subproblem(type_: str, value: str, detail: str) -> dict[str, Any]:
    return {
        "type": ERROR_NS + type_,
        "detail": detail,
        "status": _STATUS.get(type_, 400),
        "identifier": {"type": "dns", "value": value},
    }
