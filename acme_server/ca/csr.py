"""Finalize-time CSR checks (RFC 8555 7.4): every refusal says exactly what is wrong.

The messages become the `detail` of a `badCSR` problem, so they are written for the
person running the ACME client.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from acme_server.ca.keys import RSA_MAX_BITS, RSA_MIN_BITS, spki_sha256

ALLOWED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
_CURVE_NAMES = {"secp521r1": "P-521", **ALLOWED_CURVES}


class CSRError(ValueError):
    """A CSR the CA refuses; `str(exc)` is the user-facing detail for `badCSR`."""


def parse_csr(der: bytes) -> x509.CertificateSigningRequest:
    """Decode a DER CSR, turning any decoding failure into a CSRError."""
    try:
        csr = x509.load_der_x509_csr(der)
        csr.subject  # noqa: B018  (parsed lazily: surface errors here, not later)
        csr.extensions  # noqa: B018
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CSRError(f"CSR could not be parsed: {exc}") from None
    return csr


def check_csr(
    csr: x509.CertificateSigningRequest,
    expected_names: list[str],
    *,
    account_key_spki_sha256: str,
) -> None:
    """Raise CSRError unless `csr` is well signed, has an allowed key that is not the
    account key, and names exactly `expected_names` (case-insensitive, duplicates ignored).
    """
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CSRError(f"CSR public key is not supported: {exc}") from None
    _check_key(public_key)
    if not csr.is_signature_valid:
        raise CSRError("CSR signature is invalid")
    if spki_sha256(public_key) == account_key_spki_sha256.lower():
        raise CSRError("CSR public key must not be the account key")
    _check_names(_csr_names(csr), expected_names)


def _check_key(key: Any) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if bits < RSA_MIN_BITS:
            raise CSRError(f"RSA key of {bits} bits is too small (minimum {RSA_MIN_BITS})")
        if bits > RSA_MAX_BITS:
            raise CSRError(f"RSA key of {bits} bits is too large (maximum {RSA_MAX_BITS})")
        e = key.public_numbers().e
        if e < 3 or e % 2 == 0:
            raise CSRError(f"RSA public exponent {e} is not allowed (must be odd and >= 3)")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            shown = _CURVE_NAMES.get(key.curve.name, key.curve.name)
            raise CSRError(f"ECDSA key on curve {shown} is not allowed (allowed: P-256, P-384)")
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    kind = {
        dsa.DSAPublicKey: "DSA",
        ed448.Ed448PublicKey: "Ed448",
    }
    name = next((v for k, v in kind.items() if isinstance(key, k)), type(key).__name__)
    raise CSRError(
        f"{name} keys are not allowed (allowed: RSA {RSA_MIN_BITS}-{RSA_MAX_BITS} bits, "
        "ECDSA P-256/P-384, Ed25519)"
    )


def _describe(name: x509.GeneralName) -> str:
    kinds = {
        x509.IPAddress: "IP address",
        x509.RFC822Name: "email address",
        x509.UniformResourceIdentifier: "URI",
        x509.DirectoryName: "directory name",
        x509.RegisteredID: "registered ID",
        x509.OtherName: "otherName",
    }
    kind = next((v for k, v in kinds.items() if isinstance(name, k)), type(name).__name__)
    return f"{kind} {name.value}"


def _csr_names(csr: x509.CertificateSigningRequest) -> set[tuple[str, str]]:
    """(kind, value) of every SAN and CN: ("dns", name) or ("ip", canonical address).

    A CN reads as an IP address when it parses as one (a CN spelling an address the order
    does not have, in any form, is then refused like any other extra name)."""
    names: set[tuple[str, str]] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except (ValueError, TypeError) as exc:
        raise CSRError(f"CSR extensions could not be parsed: {exc}") from None
    if san is not None:
        others = [_describe(n) for n in san if not isinstance(n, x509.DNSName | x509.IPAddress)]
        if others:
            raise CSRError(
                "CSR subjectAltName may contain only DNS names and IP addresses; found "
                + ", ".join(others)
            )
        names.update(("dns", n.value.lower()) for n in san if isinstance(n, x509.DNSName))
        names.update(("ip", str(n.value)) for n in san if isinstance(n, x509.IPAddress))
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        names.add(_typed(value))
    return names


def _typed(value: str) -> tuple[str, str]:
    try:
        return "ip", str(ipaddress.ip_address(value))
    except ValueError:
        return "dns", value.lower()


def _show(name: tuple[str, str]) -> str:
    kind, value = name
    return f"IP address {value}" if kind == "ip" else value


def _check_names(found: set[tuple[str, str]], expected_names: list[str]) -> None:
    """`expected_names` are the order's normalised values: an IP literal there is an ip
    identifier (a DNS identifier is never one), which must be an iPAddress SAN, never a
    dNSName."""
    expected = {_typed(n) for n in expected_names}
    if found == expected:
        return
    if not found:
        raise CSRError(
            "CSR contains no names; expected exactly: "
            + ", ".join(_show(n) for n in sorted(expected))
        )
    parts = []
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing:
        parts.append("missing " + ", ".join(_show(n) for n in missing))
    if extra:
        parts.append("not in the order " + ", ".join(_show(n) for n in extra))
    raise CSRError("CSR names do not match the order: " + "; ".join(parts))
