"""tls-alpn-01 (RFC 8737): a TLS handshake offering only `acme-tls/1`, then a certificate check.

The validator resolves the identifier like http-01 does (dnspython, then the
`AddressPolicy` of addresses.py drops what validation must not reach), connects to one
checked address on the configured port, and shakes hands with SNI = the identifier (the
reverse-DNS name for an IP identifier, RFC 8738 §6) and ALPN `acme-tls/1` only. The
certificate is self-signed by design, so no chain or name is verified (RFC 8737 §3);
what proves control is that the server negotiated `acme-tls/1` and presented a
certificate whose only SAN is the identifier and whose critical `id-pe-acmeIdentifier`
extension holds SHA-256 of the key authorization. Details say what was wrong, never what
the server sent (no SAN or other certificate content is repeated), as with http-01.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import ssl
from dataclasses import dataclass
from functools import cache

import dns.asyncresolver
from cryptography import x509

from acme_server.domain.problems import ProblemType
from acme_server.validation.addresses import STRICT, AddressPolicy
from acme_server.validation.errors import ValidationError
from acme_server.validation.resolver import resolve_addresses

ACME_TLS_ALPN = "acme-tls/1"
ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_DER_OCTET_STRING_32 = b"\x04\x20"  # tag and length of a DER OCTET STRING of 32 bytes


def sni_for(identifier_type: str, value: str) -> str:
    """The SNI name to send: a DNS name as is, an IP as its reverse-DNS name (RFC 8738 §6)."""
    if identifier_type == "dns":
        return value.rstrip(".")
    if identifier_type == "ip":
        return ipaddress.ip_address(value).reverse_pointer
    raise ValueError(f"tls-alpn-01 cannot validate identifier type {identifier_type!r}")


def key_authorization_digest(key_authorization: str) -> bytes:
    """SHA-256 of the key authorization: what the acmeIdentifier extension must carry."""
    return hashlib.sha256(key_authorization.encode("ascii")).digest()


@cache
def _client_context() -> ssl.SSLContext:
    """TLS 1.2+, ALPN `acme-tls/1` only, no verification: the certificate is self-signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    return context


@dataclass
class _Attempt:
    """Where the validation is, so a timeout can say which step did not finish."""

    name: str
    port: int
    phase: str = "resolving"
    address: str = ""

    @property
    def peer(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def timeout_error(self, timeout: float) -> ValidationError:
        if self.phase == "resolving":
            return ValidationError(
                ProblemType.DNS,
                f"DNS problem: query timed out looking up {self.name} (no answer within "
                f"{timeout:g}s)",
                transient=True,
            )
        doing = "connecting to" if self.phase == "connecting" else "in the TLS handshake with"
        return ValidationError(
            ProblemType.CONNECTION,
            f"Timeout after {timeout:g}s {doing} {self.peer} for tls-alpn-01 ({self.name})",
            transient=True,
        )


async def validate_tls_alpn01(
    name: str,
    key_authorization: str,
    *,
    port: int,
    resolver: dns.asyncresolver.Resolver,
    timeout: float = 10.0,  # noqa: ASYNC109 - interface fixed by the scheduler; applied below
    policy: AddressPolicy = STRICT,
    identifier_type: str = "dns",
) -> None:
    """Shake hands with the identifier's server and check its certificate; raise on failure.

    `timeout` bounds the whole validation: resolution, the TCP connect and the handshake.
    """
    if identifier_type == "dns" and name.startswith("*."):
        raise ValidationError(
            ProblemType.MALFORMED,
            f"tls-alpn-01 cannot validate the wildcard name {name} (RFC 8737 §3); use dns-01",
        )
    sni = sni_for(identifier_type, name)
    attempt = _Attempt(name, port)
    try:
        async with asyncio.timeout(timeout):
            addresses = await _allowed_addresses(resolver, name, policy)
            der = await _handshake_any(attempt, addresses, sni)
    except TimeoutError:
        raise attempt.timeout_error(timeout) from None
    check_certificate(der, identifier_type, name, key_authorization, attempt.peer)


async def _allowed_addresses(
    resolver: dns.asyncresolver.Resolver, name: str, policy: AddressPolicy
) -> list[str]:
    """The name's addresses `policy` allows, IPv4 first; refuse when there are none."""
    addresses = await resolve_addresses(resolver, name)
    allowed = [a for a in addresses if policy.allows(a)]
    if allowed:
        return sorted(allowed, key=lambda a: ":" in a)
    reasons = sorted({policy.refusal(a) or "" for a in addresses})
    what = f"{name} resolves only to addresses"
    if addresses == [name]:
        what = f"the address {name} is"
    raise ValidationError(
        ProblemType.CONNECTION,
        f"{what} not allowed for validation ({', '.join(reasons)})",
    )


async def _handshake_any(attempt: _Attempt, addresses: list[str], sni: str) -> bytes:
    """The peer certificate (DER) from the first address that accepts a TCP connection."""
    first_error: ValidationError | None = None
    for address in addresses:
        attempt.address = address
        try:
            return await _handshake(attempt, address, sni)
        except _ConnectFailed as failed:
            first_error = first_error or failed.error
    assert first_error is not None
    raise first_error


async def _handshake(attempt: _Attempt, address: str, sni: str) -> bytes:
    """Connect to exactly `address` (already checked), then TLS with our SNI and ALPN."""
    attempt.phase = "connecting"
    try:
        _, writer = await asyncio.open_connection(address, attempt.port)
    except ConnectionRefusedError:
        raise _ConnectFailed(
            ValidationError(
                ProblemType.CONNECTION,
                f"Connection refused to {attempt.peer} for tls-alpn-01 ({attempt.name})",
                transient=True,
            )
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _ConnectFailed(
            ValidationError(
                ProblemType.CONNECTION,
                f"Error connecting to {attempt.peer} for tls-alpn-01 ({attempt.name}): {reason}",
                transient=True,
            )
        ) from None
    attempt.phase = "handshake"
    try:
        await writer.start_tls(_client_context(), server_hostname=sni)
        ssl_object = writer.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol() if ssl_object else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ValidationError(
            ProblemType.TLS,
            f"TLS handshake with {attempt.peer} for tls-alpn-01 ({attempt.name}, SNI {sni}, "
            f"ALPN {ACME_TLS_ALPN}) failed: {reason}",
        ) from None
    finally:
        writer.transport.abort()  # nothing more to say; don't wait for the peer's close
    if protocol != ACME_TLS_ALPN:
        raise ValidationError(
            ProblemType.TLS,
            f"The server at {attempt.peer} did not negotiate the {ACME_TLS_ALPN} protocol "
            f"for {attempt.name} (SNI {sni}); it answered with "
            f"{'no ALPN protocol' if protocol is None else 'another protocol'}: it is not a "
            "tls-alpn-01 responder (RFC 8737 §3)",
        )
    if not der:
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"The server at {attempt.peer} presented no certificate for {attempt.name}",
        )
    return bytes(der)


def check_certificate(
    der: bytes, identifier_type: str, name: str, key_authorization: str, peer: str
) -> None:
    """The RFC 8737 §3 checks of the presented certificate; `unauthorized` naming the fault."""
    where = f"The tls-alpn-01 certificate from {peer} for {name}"
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension):
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"{where} could not be parsed (malformed, or an extension appears twice)",
        ) from None
    _check_san(extensions, identifier_type, name, where)
    try:
        ext = extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"{where} has no acmeIdentifier extension (OID {ID_PE_ACME_IDENTIFIER.dotted_string})",
        ) from None
    if not ext.critical:
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"{where} has an acmeIdentifier extension that is not marked critical "
            "(RFC 8737 §3 requires it to be)",
        )
    raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    expected = _DER_OCTET_STRING_32 + key_authorization_digest(key_authorization)
    if not hmac.compare_digest(raw, expected):
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"{where} has an acmeIdentifier extension that is not the SHA-256 digest of this "
            f'challenge\'s key authorization "{key_authorization}" (a DER OCTET STRING of '
            "32 bytes is expected)",
        )


def _check_san(extensions: x509.Extensions, identifier_type: str, name: str, where: str) -> None:
    """Exactly one SAN, and it is the identifier (dNSName, or iPAddress for an IP)."""
    try:
        names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    want = "iPAddress" if identifier_type == "ip" else "dNSName"
    if len(names) != 1:
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"{where} has {len(names)} subjectAltName entries; exactly one, the {want} "
            f"{name}, is required",
        )
    (san,) = names
    if identifier_type == "ip":
        ok = isinstance(san, x509.IPAddress) and san.value == ipaddress.ip_address(name)
    else:
        ok = isinstance(san, x509.DNSName) and _dns_key(san.value) == _dns_key(name)
    if not ok:
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            f"{where} has a subjectAltName that is not the {want} {name}",
        )


def _dns_key(name: str) -> str:
    return name.lower().rstrip(".")


class _ConnectFailed(Exception):
    """The TCP connection to one address failed; the next address may still work."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(error.detail)
        self.error = error
