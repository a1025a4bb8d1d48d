"""Finalize-time CSR checks: each rule accepted or refused with a detail naming the problem."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence

import josepy
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from acme_server.ca import CSRError, check_csr, parse_csr, spki_sha256, spki_sha256_of_jwk
from acme_server.ca.csr import _check_key

ACCOUNT_KEY = ec.generate_private_key(ec.SECP256R1())
ACCOUNT_SPKI = spki_sha256(ACCOUNT_KEY.public_key())


def build_csr(
    key,
    names: Sequence[str] = ("a.example.com",),
    *,
    cn: str | None = None,
    extra_sans: Sequence[x509.GeneralName] = (),
) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    sans = [x509.DNSName(n) for n in names] + list(extra_sans)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = (
        None
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return builder.sign(key, algorithm)


def roundtrip(csr: x509.CertificateSigningRequest) -> x509.CertificateSigningRequest:
    return parse_csr(csr.public_bytes(serialization.Encoding.DER))


def check(csr, expected: Sequence[str] = ("a.example.com",), account: str = ACCOUNT_SPKI) -> None:
    check_csr(roundtrip(csr), list(expected), account_key_spki_sha256=account)


def refused(csr, expected: Sequence[str] = ("a.example.com",), account: str = ACCOUNT_SPKI) -> str:
    with pytest.raises(CSRError) as info:
        check(csr, expected, account)
    return str(info.value)


# ---------------------------------------------------------------- parsing


def test_parse_valid_der():
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()))
    assert roundtrip(csr).public_bytes(serialization.Encoding.DER) == csr.public_bytes(
        serialization.Encoding.DER
    )


@pytest.mark.parametrize("der", [b"", b"garbage", secrets.token_bytes(300), b"\x30\x03\x02\x01"])
def test_parse_garbage(der):
    with pytest.raises(CSRError, match="could not be parsed"):
        parse_csr(der)


def test_parse_pem_is_not_der():
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(CSRError):
        parse_csr(csr.public_bytes(serialization.Encoding.PEM))


def test_csr_error_is_value_error():
    assert issubclass(CSRError, ValueError)


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: rsa.generate_private_key(65537, 3072),
        lambda: rsa.generate_private_key(3, 2048),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["p256", "p384", "rsa2048", "rsa3072", "rsa-e3", "ed25519"],
)
def test_allowed_keys(make_key):
    check(build_csr(make_key()))


def test_p521_refused():
    detail = refused(build_csr(ec.generate_private_key(ec.SECP521R1())))
    assert "P-521" in detail and "not allowed" in detail


def test_other_curve_refused():
    detail = refused(build_csr(ec.generate_private_key(ec.SECP256K1())))
    assert "secp256k1" in detail


def test_small_rsa_refused():
    detail = refused(build_csr(rsa.generate_private_key(65537, 1024)))
    assert "RSA key of 1024 bits is too small" in detail


def test_rsa_2047_bits_refused():
    detail = refused(build_csr(rsa.generate_private_key(65537, 2047)))
    assert "2047 bits" in detail


def test_huge_rsa_refused():
    # Generating a >8192-bit key takes too long; the key check itself is what matters.
    n = secrets.randbits(8200) | 1 | (1 << 8199)
    with pytest.raises(CSRError, match="8200 bits is too large"):
        _check_key(rsa.RSAPublicNumbers(65537, n).public_key())


def test_rsa_even_exponent_refused():
    der = build_csr(rsa.generate_private_key(65537, 2048)).public_bytes(serialization.Encoding.DER)
    exponent = bytes.fromhex("0203010001")  # INTEGER 65537 inside the SubjectPublicKeyInfo
    assert der.count(exponent) == 1
    csr = parse_csr(der.replace(exponent, bytes.fromhex("0203010000")))  # e = 65536
    with pytest.raises(CSRError, match="CSR public key is not supported: e must be odd"):
        check_csr(csr, ["a.example.com"], account_key_spki_sha256=ACCOUNT_SPKI)


def test_dsa_refused():
    detail = refused(build_csr(dsa.generate_private_key(2048)))
    assert detail.startswith("DSA keys are not allowed")


def test_ed448_refused():
    detail = refused(build_csr(ed448.Ed448PrivateKey.generate()))
    assert detail.startswith("Ed448 keys are not allowed")


def test_bad_signature_refused():
    der = bytearray(
        build_csr(ec.generate_private_key(ec.SECP256R1()), ["a.example.com"]).public_bytes(
            serialization.Encoding.DER
        )
    )
    # Change one byte of the signed name inside the requested SAN: still parses, signature fails.
    at = der.index(b"a.example.com")
    der[at] = ord("b")
    csr = parse_csr(bytes(der))
    with pytest.raises(CSRError, match="signature is invalid"):
        check_csr(csr, ["b.example.com"], account_key_spki_sha256=ACCOUNT_SPKI)


def test_account_key_refused():
    detail = refused(build_csr(ACCOUNT_KEY))
    assert detail == "CSR public key must not be the account key"


def test_account_key_refused_via_jwk_hash():
    key = rsa.generate_private_key(65537, 2048)
    account = spki_sha256_of_jwk(josepy.JWKRSA(key=key))
    assert refused(build_csr(key), account=account) == "CSR public key must not be the account key"
    check(build_csr(rsa.generate_private_key(65537, 2048)), account=account)


# ---------------------------------------------------------------- names


def test_names_case_insensitive_and_deduplicated():
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, ["A.Example.COM", "a.example.com", "*.Example.com"], cn="a.EXAMPLE.com")
    check(csr, ["a.example.com", "*.example.com"])
    check(csr, ["*.example.com", "A.example.com", "a.example.com"])


def test_common_name_counts_as_a_name():
    key = ec.generate_private_key(ec.SECP256R1())
    check(build_csr(key, [], cn="only-cn.example"), ["only-cn.example"])
    detail = refused(build_csr(key, ["a.example.com"], cn="other.example"))
    assert "not in the order other.example" in detail


def test_missing_and_extra_names_listed():
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, ["a.example.com", "c.example.com", "d.example.com"])
    detail = refused(csr, ["a.example.com", "b.example.com"])
    assert "missing b.example.com" in detail
    assert "not in the order c.example.com, d.example.com" in detail


def test_missing_name_only():
    detail = refused(
        build_csr(ec.generate_private_key(ec.SECP256R1()), ["a.example.com"]),
        ["a.example.com", "b.example.com"],
    )
    assert detail == "CSR names do not match the order: missing b.example.com"


def test_wildcard_is_not_its_base_name():
    detail = refused(
        build_csr(ec.generate_private_key(ec.SECP256R1()), ["*.example.com"]), ["example.com"]
    )
    assert "missing example.com" in detail and "*.example.com" in detail


def test_no_names():
    detail = refused(build_csr(ec.generate_private_key(ec.SECP256R1()), []))
    assert detail.startswith("CSR contains no names")
    assert "a.example.com" in detail


@pytest.mark.parametrize(
    ("san", "shown"),
    [
        (x509.IPAddress(ipaddress.ip_address("192.0.2.1")), "IP address 192.0.2.1"),
        (x509.RFC822Name("admin@example.com"), "email address admin@example.com"),
        (x509.UniformResourceIdentifier("https://example.com/"), "URI https://example.com/"),
    ],
    ids=["ip", "email", "uri"],
)
def test_non_dns_san_refused(san, shown):
    detail = refused(build_csr(ec.generate_private_key(ec.SECP256R1()), extra_sans=[san]))
    if isinstance(san, x509.IPAddress):  # RFC 8738: allowed, but only the order's addresses
        assert "not in the order IP address 192.0.2.1" in detail
    else:
        assert "may contain only DNS names" in detail
    assert shown in detail
