"""RFC 8555 problem documents: the only way an ACME client ever hears about an error.

`ProblemType` names every ACME error type this server uses; its value is the short name and
`.urn` the full `urn:ietf:params:acme:error:` type, so no URN is ever written by hand.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

ERROR_NS = "urn:ietf:params:acme:error:"


class ProblemType(StrEnum):
    """ACME error types (RFC 8555 section 6.7) with their default HTTP status."""

    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    ALREADY_REPLACED = "alreadyReplaced"  # RFC 9773 (ARI): `replaces` names a replaced cert
    ALREADY_REVOKED = "alreadyRevoked"
    BAD_CSR = "badCSR"
    BAD_NONCE = "badNonce"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_REVOCATION_REASON = "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    CAA = "caa"
    COMPOUND = "compound"
    CONNECTION = "connection"
    DNS = "dns"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    INCORRECT_RESPONSE = "incorrectResponse"
    INVALID_CONTACT = "invalidContact"
    INVALID_PROFILE = "invalidProfile"  # draft-ietf-acme-profiles: unknown or not allowed
    MALFORMED = "malformed"
    ORDER_NOT_READY = "orderNotReady"
    RATE_LIMITED = "rateLimited"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    SERVER_INTERNAL = "serverInternal"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    USER_ACTION_REQUIRED = "userActionRequired"

    @property
    def urn(self) -> str:
        return ERROR_NS + self.value

    @property
    def status(self) -> int:
        """Default HTTP status (section 6.7 and common practice)."""
        return _STATUS.get(self, 400)


_STATUS = {
    ProblemType.ALREADY_REPLACED: 409,
    ProblemType.CAA: 403,
    ProblemType.COMPOUND: 403,
    ProblemType.EXTERNAL_ACCOUNT_REQUIRED: 403,
    ProblemType.ORDER_NOT_READY: 403,
    ProblemType.RATE_LIMITED: 429,
    ProblemType.SERVER_INTERNAL: 500,
    ProblemType.UNAUTHORIZED: 403,
    ProblemType.USER_ACTION_REQUIRED: 403,
}


class AcmeProblem(Exception):
    """Raised anywhere in request handling; the web layer renders it as problem+json."""

    def __init__(
        self,
        type_: ProblemType,
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
        self.status = status or self.type.status
        self.subproblems = subproblems
        self.headers = headers or {}
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        return problem_json(self.type, self.detail, self.status, self.subproblems, self.extra)


def problem_json(
    type_: ProblemType,
    detail: str,
    status: int | None = None,
    subproblems: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": type_.urn,
        "detail": detail,
        "status": status or type_.status,
    }
    if subproblems:
        doc["subproblems"] = subproblems
    if extra:
        doc.update(extra)
    return doc


def identifier_subproblem(
    type_: ProblemType, value: str, detail: str, identifier_type: str = "dns"
) -> dict[str, Any]:
    """A subproblem naming one identifier (`identifier_type` "dns" or RFC 8738 "ip")."""
    return {
        "type": type_.urn,
        "detail": detail,
        "status": type_.status,
        "identifier": {"type": str(identifier_type), "value": value},
    }
