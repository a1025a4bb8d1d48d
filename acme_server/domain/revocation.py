"""Which revocation reasons may be asked for, by ACME (codes) or by Kubernetes (names).

One list for both doors, so `revokeCert` and the operator's `acme-gateway.io/revoke`
annotation accept exactly the same reasons (RFC 5280 CRLReason 0, 1, 3, 4, 5).
"""

from __future__ import annotations

# RFC 5280 CRLReason codes a subscriber may ask for, with the RFC's names.
ALLOWED_REASONS: dict[int, str] = {
    0: "unspecified",
    1: "keyCompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
}
_BY_NAME = {name.lower(): code for code, name in ALLOWED_REASONS.items()}


def allowed_text() -> str:
    """The allowed reasons as a user reads them: names with their codes."""
    return ", ".join(f"{name} ({code})" for code, name in ALLOWED_REASONS.items())


def reason_from_text(text: str) -> int | None:
    """The code of an annotation value: a reason name (any case) or its decimal code;
    None when it is not one of the allowed reasons."""
    value = text.strip()
    if value.isascii() and value.isdigit() and len(value) <= 2:
        code = int(value)
        return code if code in ALLOWED_REASONS else None
    return _BY_NAME.get(value.lower())
