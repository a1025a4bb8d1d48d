"""OCSP answers (RFC 6960, RFC 5019 profile), signed by the delegated responder.

One certificate per request (RFC 5019 2.1.1); a request we cannot parse gets
`malformedRequest`, one about another issuer `unauthorized`, a serial we never issued
`unknown`. The nonce is echoed when the client sent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from acme_server.ca.crl import reason_flag
from acme_server.ca.ocsp_responder import Responder
from acme_server.ca.profile import issuer_key_id

HASHES: tuple[type[hashes.HashAlgorithm], ...] = (
    hashes.SHA1,
    hashes.SHA256,
    hashes.SHA384,
    hashes.SHA512,
)


@dataclass(frozen=True)
class Status:
    """What the store says about one serial; `known` False when we never issued it."""

    known: bool
    revoked_at: datetime | None = None
    reason: int | None = None


@dataclass(frozen=True)
class Answer:
    der: bytes
    next_update: datetime | None  # None for unsuccessful responses (never cached)
    this_update: datetime | None = None


class IssuerIds:
    """The issuer's name and key hashes for every CertID hash algorithm we accept."""

    def __init__(self, issuer: x509.Certificate, witness: x509.Certificate) -> None:
        # `witness` is any certificate `issuer` signed: cryptography computes the CertID
        # hashes from such a pair, so no key-type-specific encoding is repeated here.
        self._ids: dict[str, tuple[bytes, bytes]] = {}
        for algorithm in HASHES:
            hash_ = algorithm()
            request = ocsp.OCSPRequestBuilder().add_certificate(witness, issuer, hash_).build()
            self._ids[hash_.name] = (request.issuer_name_hash, request.issuer_key_hash)
        self.key_id = issuer_key_id(issuer)

    def matches(self, request: ocsp.OCSPRequest) -> bool:
        ids = self._ids.get(request.hash_algorithm.name)
        return ids == (request.issuer_name_hash, request.issuer_key_hash)


def parse_request(der: bytes) -> ocsp.OCSPRequest | None:
    """The one request in `der`, or None when it is not a well-formed single request."""
    try:
        request = ocsp.load_der_ocsp_request(der)
        request.hash_algorithm  # noqa: B018 - raises for hash algorithms we cannot compute
        _ = request.extensions
    except (ValueError, TypeError, NotImplementedError, x509.UnsupportedGeneralNameType):
        return None
    return request


def unsuccessful(status: ocsp.OCSPResponseStatus) -> Answer:
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )
    return Answer(der, None)


def _nonce(request: ocsp.OCSPRequest) -> x509.OCSPNonce | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value
    except x509.ExtensionNotFound:
        return None


def sign(
    request: ocsp.OCSPRequest,
    status: Status,
    responder: Responder,
    *,
    validity: timedelta,
    now: datetime | None = None,
) -> Answer:
    """A successful basic response for `request`'s certificate (pure; any thread)."""
    this_update = (now or datetime.now(UTC)).replace(microsecond=0)
    next_update = min(this_update + validity, responder.certificate.not_valid_after_utc)
    if not status.known:
        cert_status = ocsp.OCSPCertStatus.UNKNOWN
    elif status.revoked_at is not None:
        cert_status = ocsp.OCSPCertStatus.REVOKED
    else:
        cert_status = ocsp.OCSPCertStatus.GOOD
    revoked = cert_status == ocsp.OCSPCertStatus.REVOKED
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=cert_status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=status.revoked_at if revoked else None,
            revocation_reason=reason_flag(status.reason) if revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
        .certificates([responder.certificate])
    )
    nonce = _nonce(request)
    if nonce is not None:
        builder = builder.add_extension(nonce, critical=False)
    response = builder.sign(responder.key, hashes.SHA256())
    return Answer(response.public_bytes(serialization.Encoding.DER), next_update, this_update)
