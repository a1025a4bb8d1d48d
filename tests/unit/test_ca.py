"""The built-in CA: generated and given CAs, the leaf profile, serving certificate."""

from __future__ import annotations

import ipaddress
import multiprocessing
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import josepy
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from acme_server.ca import (
    CAConfigError,
    CertificateAuthority,
    IssuedCertificate,
    spki_sha256,
    spki_sha256_of_jwk,
)
from acme_server.ca.constraints import NameConstraintsSpec
from acme_server.ca.profile import build_intermediate

DAY = timedelta(days=1)
VALIDITY = timedelta(days=90)


# ---------------------------------------------------------------- helpers


def make_csr(key, names: Sequence[str], cn: str | None = None) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def p256():
    return ec.generate_private_key(ec.SECP256R1())


def load_chain(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def verify_server(root: x509.Certificate, leaf, intermediates, name) -> None:
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(name)
    verifier.verify(leaf, intermediates)


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def make_ca_cert(
    key,
    cn: str,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key=None,
    ca: bool = True,
    path_length: int | None = None,
    key_cert_sign: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A CA certificate the way an operator's own PKI might make it."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - DAY)
        .not_valid_after(not_after or now + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ext(issuer, x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    return builder.sign(signer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def ca(data_dir) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(data_dir)


# ---------------------------------------------------------------- generated CA


def test_generated_ca_files_and_profiles(ca, data_dir):
    ca_dir = data_dir / "ca"
    for name in ("root.key", "intermediate.key"):
        assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert not list(ca_dir.glob("*.tmp")), "temporary files left behind"

    root = x509.load_pem_x509_certificate((ca_dir / "root.crt").read_bytes())
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.crt").read_bytes())
    assert ca.root_pem == (ca_dir / "root.crt").read_text()
    assert ca.issuer_chain_pem == (ca_dir / "intermediate.crt").read_text()
    assert ca.issuer_certificate == inter

    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    root_key = root.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey) and root_key.curve.name == "secp384r1"
    assert ext(root, x509.BasicConstraints).critical
    assert ext(root, x509.BasicConstraints).value == x509.BasicConstraints(True, 1)
    assert ext(root, x509.KeyUsage).value.key_cert_sign
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert 3650 * DAY <= lifetime <= 3660 * DAY

    inter.verify_directly_issued_by(root)
    inter_key = inter.public_key()
    assert isinstance(inter_key, ec.EllipticCurvePublicKey) and inter_key.curve.name == "secp256r1"
    assert ext(inter, x509.BasicConstraints).value == x509.BasicConstraints(True, 0)
    ku = ext(inter, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert isinstance(inter.signature_hash_algorithm, hashes.SHA384)  # signed by P-384 root
    lifetime = inter.not_valid_after_utc - inter.not_valid_before_utc
    assert 1824 * DAY <= lifetime <= 1828 * DAY
    assert (
        ext(inter, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(root, x509.SubjectKeyIdentifier).value.digest
    )


def test_generated_ca_is_reused(ca, data_dir):
    again = CertificateAuthority.load_or_create(data_dir)
    assert again.root_pem == ca.root_pem
    assert again.issuer_chain_pem == ca.issuer_chain_pem
    leaf = load_chain(
        again.issue(make_csr(p256(), ["x.example"]), ["x.example"], validity=VALIDITY).leaf_pem
    )[0]
    assert ca.issued_by_us(leaf)


def _start_ca(data_dir: str, barrier, out: str) -> None:
    barrier.wait()
    authority = CertificateAuthority.load_or_create(Path(data_dir))
    Path(out).write_text(authority.root_pem + authority.issuer_chain_pem)


def test_concurrent_first_start_yields_one_ca(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        data_dir = tmp_path / f"round{round_}"
        barrier = ctx.Barrier(2)
        outs = [tmp_path / f"out{round_}-{i}" for i in range(2)]
        procs = [
            ctx.Process(target=_start_ca, args=(str(data_dir), barrier, str(out))) for out in outs
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        first, second = (o.read_text() for o in outs)
        assert first == second
        assert CertificateAuthority.load_or_create(data_dir).root_pem in first


def test_missing_intermediate_is_recreated_under_same_root(tmp_path):
    ca1 = CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca" / "intermediate.crt").unlink()
    ca2 = CertificateAuthority.load_or_create(tmp_path)
    assert ca2.root_pem == ca1.root_pem
    assert ca2.issuer_chain_pem != ca1.issuer_chain_pem
    ca2.issuer_certificate.verify_directly_issued_by(load_chain(ca1.root_pem)[0])


def test_corrupt_root_is_refused_not_replaced(tmp_path):
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca" / "root.crt").write_text("garbage")
    with pytest.raises(CAConfigError, match=r"root\.crt"):
        CertificateAuthority.load_or_create(tmp_path)


def test_intermediate_near_expiry_is_renewed_and_old_leaves_still_ours(tmp_path):
    ca1 = CertificateAuthority.load_or_create(tmp_path)
    ca_dir = tmp_path / "ca"
    root = x509.load_pem_x509_certificate((ca_dir / "root.crt").read_bytes())
    root_key = serialization.load_pem_private_key((ca_dir / "root.key").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    short_key = p256()
    now = datetime.now(UTC)
    short = build_intermediate(short_key, "short-lived", root, root_key, now - 1000 * DAY)
    short = x509.CertificateBuilder(
        issuer_name=short.issuer,
        subject_name=short.subject,
        public_key=short.public_key(),
        serial_number=short.serial_number,
        not_valid_before=now - DAY,
        not_valid_after=now + 100 * DAY,
        extensions=list(short.extensions),
    ).sign(root_key, hashes.SHA384())
    (ca_dir / "intermediate.crt").write_bytes(pem(short))
    (ca_dir / "intermediate.key").write_bytes(key_pem(short_key))
    # Issue an "old" leaf from the short-lived intermediate before it is replaced.
    old_ca = CertificateAuthority(root=root, issuer=short, issuer_key=short_key)
    old_leaf = load_chain(
        old_ca.issue(make_csr(p256(), ["old.example"]), ["old.example"], validity=VALIDITY).leaf_pem
    )[0]
    assert old_leaf.not_valid_after_utc <= short.not_valid_after_utc  # clamped to issuer

    renewed = CertificateAuthority.load_or_create(tmp_path)
    assert renewed.root_pem == ca1.root_pem
    assert renewed.issuer_certificate.serial_number != short.serial_number
    assert renewed.issuer_certificate.not_valid_after_utc - now > 1000 * DAY
    assert (ca_dir / "previous" / f"{short.serial_number:x}.crt").exists()
    assert renewed.issued_by_us(old_leaf)


# ---------------------------------------------------------------- leaf profile


def issue(ca: CertificateAuthority, key, names, **kw) -> tuple[IssuedCertificate, x509.Certificate]:
    issued = ca.issue(
        make_csr(key, names), list(names), validity=kw.pop("validity", VALIDITY), **kw
    )
    return issued, load_chain(issued.leaf_pem)[0]


def test_leaf_profile_ecdsa(ca, data_dir):
    # clientAuth is opt-in (issue 8 item 5): this profile test grants it explicitly.
    ca = CertificateAuthority.load_or_create(data_dir, leaf_client_auth=True)
    key = p256()
    issued, leaf = issue(ca, key, ["www.example.com", "*.example.com"])
    san = ext(leaf, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.com", "*.example.com"]
    assert not san.critical
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.com"
    assert ext(leaf, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    ku = ext(leaf, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    assert (
        ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(ca.issuer_certificate, x509.SubjectKeyIdentifier).value.digest
    )
    assert ext(leaf, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()
    )
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)  # P-256 issuer
    assert issued.serial_hex == format(leaf.serial_number, "x")
    assert issued.serial_hex == issued.serial_hex.lower() and not issued.serial_hex.startswith("0x")
    assert issued.spki_sha256 == spki_sha256(key.public_key())
    assert issued.names == ["www.example.com", "*.example.com"]
    assert issued.not_before == leaf.not_valid_before_utc and issued.not_before.tzinfo is not None
    assert issued.not_after == leaf.not_valid_after_utc


def test_leaf_profile_rsa_adds_key_encipherment(ca):
    _, leaf = issue(ca, rsa.generate_private_key(65537, 2048), ["rsa.example"])
    assert ext(leaf, x509.KeyUsage).value.key_encipherment


def test_leaf_ed25519_key(ca):
    _, leaf = issue(ca, ed25519.Ed25519PrivateKey.generate(), ["ed.example"])
    assert isinstance(leaf.public_key(), ed25519.Ed25519PublicKey)
    assert not ext(leaf, x509.KeyUsage).value.key_encipherment


def test_long_first_name_gives_empty_subject_and_critical_san(ca):
    long_name = ("a" * 60) + ".example.com"
    _, leaf = issue(ca, p256(), [long_name, "short.example"])
    assert len(leaf.subject) == 0
    san = ext(leaf, x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [long_name, "short.example"]


def test_chain_verifies_and_excludes_root(ca, tmp_path):
    issued, leaf = issue(ca, p256(), ["app.example.com", "*.wild.example.com"])
    certs = load_chain(issued.chain_pem)
    root = load_chain(ca.root_pem)[0]
    assert certs == [leaf, ca.issuer_certificate]
    assert root not in certs
    assert issued.chain_pem == issued.leaf_pem + ca.issuer_chain_pem
    assert "\n\n" not in issued.chain_pem
    assert "-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----" in issued.chain_pem
    assert issued.chain_pem.endswith("-----END CERTIFICATE-----\n")
    verify_server(root, leaf, certs[1:], DNSName("app.example.com"))
    verify_server(root, leaf, certs[1:], DNSName("foo.wild.example.com"))
    with pytest.raises(VerificationError):
        verify_server(root, leaf, certs[1:], DNSName("other.example.com"))
    other_root = load_chain(CertificateAuthority.load_or_create(tmp_path).root_pem)[0]
    with pytest.raises(VerificationError):
        verify_server(other_root, leaf, certs[1:], DNSName("app.example.com"))


def test_serials_are_distinct_and_random(ca):
    key = p256()
    serials = [issue(ca, key, ["s.example"])[1].serial_number for _ in range(200)]
    assert len(set(serials)) == len(serials)
    assert all(0 < s < 2**159 for s in serials)
    # >= 64 bits of entropy: values are spread over ~159 bits, none suspiciously small.
    assert all(s.bit_length() > 64 for s in serials)
    assert max(s.bit_length() for s in serials) >= 150


def test_default_validity_backdates_one_minute(ca):
    before = datetime.now(UTC).replace(microsecond=0)
    issued, _ = issue(ca, p256(), ["v.example"])
    after = datetime.now(UTC)
    assert before - timedelta(minutes=1) <= issued.not_before <= after - timedelta(seconds=59)
    assert before + VALIDITY <= issued.not_after <= after + VALIDITY


def test_explicit_not_before_and_not_after_win(ca):
    nb = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    na = datetime(2030, 2, 1, tzinfo=UTC)
    issued, _ = issue(ca, p256(), ["w.example"], not_before=nb, not_after=na)
    assert (issued.not_before, issued.not_after) == (nb, na)
    issued, _ = issue(ca, p256(), ["w.example"], not_before=nb, validity=7 * DAY)
    assert issued.not_after == nb + 7 * DAY


def test_validity_clamped_to_issuer(ca):
    issued, _ = issue(ca, p256(), ["long.example"], validity=20 * 365 * DAY)
    assert issued.not_after == ca.issuer_certificate.not_valid_after_utc


def test_naive_datetime_refused(ca):
    with pytest.raises(ValueError, match="timezone"):
        issue(ca, p256(), ["n.example"], not_after=datetime(2030, 1, 1))


def test_concurrent_issue_from_threads(ca):
    root = load_chain(ca.root_pem)[0]
    key = p256()
    csr = make_csr(key, ["t.example"])

    def one(_: int) -> IssuedCertificate:
        return ca.issue(csr, ["t.example"], validity=VALIDITY)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    assert len({r.serial_hex for r in results}) == 200
    for r in results[::20]:
        certs = load_chain(r.chain_pem)
        verify_server(root, certs[0], certs[1:], DNSName("t.example"))


def test_issued_by_us_rejects_foreign_and_forged(ca, tmp_path):
    _, ours = issue(ca, p256(), ["ours.example"])
    assert ca.issued_by_us(ours)
    other = CertificateAuthority.load_or_create(tmp_path)
    _, foreign = issue(other, p256(), ["ours.example"])
    assert not ca.issued_by_us(foreign)
    # Same issuer name, wrong key: the signature check catches it.
    forger = CertificateAuthority(
        root=ca.issuer_certificate, issuer=ca.issuer_certificate, issuer_key=p256()
    )
    _, forged = issue(forger, p256(), ["ours.example"])
    assert forged.issuer == ours.issuer
    assert not ca.issued_by_us(forged)


def test_spki_sha256_of_jwk_matches_key():
    ec_key = p256()
    rsa_key = rsa.generate_private_key(65537, 2048)
    expected_ec = spki_sha256(ec_key.public_key())
    assert spki_sha256_of_jwk(josepy.JWKEC(key=ec_key)) == expected_ec
    assert spki_sha256_of_jwk(josepy.JWKEC(key=ec_key.public_key())) == expected_ec
    assert spki_sha256_of_jwk(josepy.JWKRSA(key=rsa_key)) == spki_sha256(rsa_key.public_key())
    assert spki_sha256(p256().public_key()) != expected_ec
    assert len(expected_ec) == 64 and expected_ec == expected_ec.lower()


# ---------------------------------------------------------------- given CA


@pytest.fixture(scope="module")
def pki():
    """An operator's PKI: RSA-3072 root, intermediate, and a sub-intermediate."""
    root_key = rsa.generate_private_key(65537, 3072)
    root = make_ca_cert(root_key, "Operator Root")
    inter_key = p256()
    inter = make_ca_cert(
        inter_key, "Operator Intermediate", issuer=root, issuer_key=root_key, path_length=1
    )
    sub_key = p256()
    sub = make_ca_cert(sub_key, "Operator Sub", issuer=inter, issuer_key=inter_key, path_length=0)
    return {"root": (root, root_key), "inter": (inter, inter_key), "sub": (sub, sub_key)}


def given(tmp_path, certs, key, name="given") -> CertificateAuthority:
    return CertificateAuthority.load_or_create(
        tmp_path / "data",
        ca_cert=write(tmp_path / f"{name}.crt", pem(*certs)),
        ca_key=write(tmp_path / f"{name}.key", key_pem(key)),
    )


def test_given_self_signed_root(tmp_path, pki):
    root, root_key = pki["root"]
    ca = given(tmp_path, [root], root_key)
    assert ca.root_pem == pem(root).decode()
    assert ca.issuer_chain_pem == ""
    issued, leaf = issue(ca, p256(), ["byo.example"])
    assert issued.chain_pem == issued.leaf_pem
    verify_server(root, leaf, [], DNSName("byo.example"))
    assert ca.issued_by_us(leaf)
    assert not (tmp_path / "data" / "ca").exists(), "no CA generated when one is given"


def test_given_intermediate_with_root(tmp_path, pki):
    (root, _), (inter, inter_key) = pki["root"], pki["inter"]
    ca = given(tmp_path, [inter, root], inter_key)
    assert ca.root_pem == pem(root).decode()
    assert ca.issuer_chain_pem == pem(inter).decode()
    issued, leaf = issue(ca, p256(), ["byo.example"])
    certs = load_chain(issued.chain_pem)
    assert certs == [leaf, inter]
    verify_server(root, leaf, certs[1:], DNSName("byo.example"))


def test_given_intermediate_without_root(tmp_path, pki):
    inter, inter_key = pki["inter"]
    ca = given(tmp_path, [inter], inter_key)
    assert ca.root_pem == pem(inter).decode()
    assert ca.issuer_chain_pem == pem(inter).decode()


def test_given_three_level_chain(tmp_path, pki):
    root, inter, (sub, sub_key) = pki["root"][0], pki["inter"][0], pki["sub"]
    ca = given(tmp_path, [sub, inter, root], sub_key)
    assert ca.issuer_chain_pem == pem(sub, inter).decode()
    assert ca.root_pem == pem(root).decode()
    issued, leaf = issue(ca, p256(), ["deep.example"])
    certs = load_chain(issued.chain_pem)
    assert certs == [leaf, sub, inter]
    verify_server(root, leaf, certs[1:], DNSName("deep.example"))


def test_given_mismatched_key(tmp_path, pki):
    with pytest.raises(CAConfigError, match="does not match"):
        given(tmp_path, [pki["inter"][0]], pki["sub"][1])


def test_given_non_ca_certificate(tmp_path, pki):
    key = p256()
    cert = make_ca_cert(
        key, "Not a CA", issuer=pki["inter"][0], issuer_key=pki["inter"][1], ca=False
    )
    with pytest.raises(CAConfigError, match="not a CA"):
        given(tmp_path, [cert], key)


def test_given_ca_without_key_cert_sign(tmp_path):
    key = p256()
    cert = make_ca_cert(key, "No signing", key_cert_sign=False)
    with pytest.raises(CAConfigError, match="keyCertSign"):
        given(tmp_path, [cert], key)


def test_given_chain_out_of_order(tmp_path, pki):
    (root, _), (inter, _), (sub, sub_key) = pki["root"], pki["inter"], pki["sub"]
    with pytest.raises(CAConfigError, match="not issued by"):
        given(tmp_path, [sub, root, inter], sub_key)


def test_given_expired_ca(tmp_path):
    key = p256()
    now = datetime.now(UTC)
    cert = make_ca_cert(key, "Old", not_before=now - 100 * DAY, not_after=now - DAY)
    with pytest.raises(CAConfigError, match="expired"):
        given(tmp_path, [cert], key)


def test_given_unusable_files(tmp_path, pki):
    root, root_key = pki["root"]
    with pytest.raises(CAConfigError, match="together"):
        CertificateAuthority.load_or_create(tmp_path, ca_cert=tmp_path / "x.crt")
    with pytest.raises(CAConfigError, match="no valid PEM certificate"):
        CertificateAuthority.load_or_create(
            tmp_path,
            ca_cert=write(tmp_path / "bad.crt", b"junk"),
            ca_key=write(tmp_path / "k.key", key_pem(root_key)),
        )
    encrypted = root_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CAConfigError, match="encrypted"):
        CertificateAuthority.load_or_create(
            tmp_path,
            ca_cert=write(tmp_path / "r.crt", pem(root)),
            ca_key=write(tmp_path / "enc.key", encrypted),
        )
    with pytest.raises(CAConfigError, match="cannot read"):
        CertificateAuthority.load_or_create(
            tmp_path, ca_cert=tmp_path / "missing.crt", ca_key=tmp_path / "k.key"
        )


# ---------------------------------------------------------------- serving certificate


def test_serving_certificate_created_and_verifies(ca, tmp_path):
    cert_path, key_path = ca.ensure_serving_certificate(tmp_path, ["localhost", "127.0.0.1"])
    assert (cert_path, key_path) == (
        tmp_path / "tls" / "server.crt",
        tmp_path / "tls" / "server.key",
    )
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    certs = load_chain(cert_path.read_text())
    leaf = certs[0]
    assert certs[1:] == [ca.issuer_certificate]
    san = ext(leaf, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert spki_sha256(key.public_key()) == spki_sha256(leaf.public_key())
    root = load_chain(ca.root_pem)[0]
    verify_server(root, leaf, certs[1:], DNSName("localhost"))
    verify_server(root, leaf, certs[1:], IPAddress(ipaddress.ip_address("127.0.0.1")))


def test_serving_certificate_reused_then_reissued_on_name_change(ca, tmp_path):
    cert_path, _ = ca.ensure_serving_certificate(tmp_path, ["localhost", "127.0.0.1"])
    first = cert_path.read_bytes()
    ca.ensure_serving_certificate(tmp_path, ["LOCALHOST", "127.0.0.1", "localhost"])
    assert cert_path.read_bytes() == first
    ca.ensure_serving_certificate(tmp_path, ["localhost", "127.0.0.1", "acme.internal"])
    second = cert_path.read_bytes()
    assert second != first
    names = ext(load_chain(second.decode())[0], x509.SubjectAlternativeName).value
    assert "acme.internal" in names.get_values_for_type(x509.DNSName)


def test_serving_certificate_reissued_near_expiry_or_foreign(tmp_path):
    now = datetime.now(UTC)
    # A CA older than the aged certificates below (leaves never predate their issuer).
    root_key = p256()
    ca = given(tmp_path, [make_ca_cert(root_key, "Old root", not_before=now - 200 * DAY)], root_key)
    cert_path, key_path = ca.ensure_serving_certificate(tmp_path, ["localhost"])
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # 90-day certificate with 20 days left (< 1/3 of its lifetime): due for renewal.
    aged = ca.issue_for_key(
        key.public_key(),
        ["localhost"],
        validity=VALIDITY,
        not_before=now - 70 * DAY,
        not_after=now + 20 * DAY,
    )
    cert_path.write_text(aged.chain_pem)
    ca.ensure_serving_certificate(tmp_path, ["localhost"])
    renewed = load_chain(cert_path.read_text())[0]
    assert aged.not_before == now.replace(microsecond=0) - 70 * DAY
    assert renewed.not_valid_after_utc > now + 80 * DAY
    # 40 days left of 90 (> 1/3): kept.
    fresh = ca.issue_for_key(
        key.public_key(),
        ["localhost"],
        validity=VALIDITY,
        not_before=now - 50 * DAY,
        not_after=now + 40 * DAY,
    )
    cert_path.write_text(fresh.chain_pem)
    key_path.write_bytes(key_pem(key))
    ca.ensure_serving_certificate(tmp_path, ["localhost"])
    assert cert_path.read_text() == fresh.chain_pem
    # Issued by another CA (e.g. data dir CA replaced): reissued by ours.
    other = CertificateAuthority.load_or_create(tmp_path / "other")
    foreign = other.issue_for_key(key.public_key(), ["localhost"], validity=VALIDITY)
    cert_path.write_text(foreign.chain_pem)
    ca.ensure_serving_certificate(tmp_path, ["localhost"])
    assert ca.issued_by_us(load_chain(cert_path.read_text())[0])


def test_serving_certificate_real_tls_handshake(ca, tmp_path):
    """Python's OpenSSL, in strict X.509 mode, accepts the chain against the root."""
    cert_path, key_path = ca.ensure_serving_certificate(tmp_path, ["localhost", "127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except ssl.SSLError:
                pass

    thread = threading.Thread(target=serve, args=(3,), daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cadata=ca.root_pem)
        client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        for host in ("localhost", "127.0.0.1"):
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=host) as tls,
            ):
                assert tls.recv(2) == b"ok"
        wrong = ssl.create_default_context(
            cadata=CertificateAuthority.load_or_create(tmp_path / "other").root_pem
        )
        with (
            pytest.raises(ssl.SSLCertVerificationError),
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            wrong.wrap_socket(raw, server_hostname="localhost"),
        ):
            pass
    finally:
        thread.join(10)
        listener.close()


# ---------------------------------------------------------------- EKU and name constraints


def test_leaf_eku_is_server_auth_only_by_default(ca):
    _, leaf = issue(ca, p256(), ["www.example.com"])
    eku = ext(leaf, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_serving_certificate_never_gets_client_auth(tmp_path):
    granted = CertificateAuthority.load_or_create(tmp_path, leaf_client_auth=True)
    cert_path, _ = granted.ensure_serving_certificate(tmp_path, ["localhost"])
    leaf = load_chain(cert_path.read_text())[0]
    assert list(ext(leaf, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    _, acme_leaf = issue(granted, p256(), ["www.example.com"])
    assert ExtendedKeyUsageOID.CLIENT_AUTH in ext(acme_leaf, x509.ExtendedKeyUsage).value


PERMITTED = NameConstraintsSpec.from_domains(["Example.COM", "corp.test."], ["secret.example.com"])


@pytest.fixture(scope="module")
def constrained(tmp_path_factory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(
        tmp_path_factory.mktemp("constrained"), constraints=PERMITTED
    )


def test_spec_normalises_and_refuses_non_domains():
    assert PERMITTED.permitted == ("corp.test", "example.com")
    assert PERMITTED.excluded == ("secret.example.com",)
    assert NameConstraintsSpec.from_domains(["bücher.example"]).permitted == (
        "xn--bcher-kva.example",
    )
    for bad in ("*.example.com", "10.0.0.1", "", "a..b"):
        with pytest.raises(CAConfigError):
            NameConstraintsSpec.from_domains([bad])


def test_constrained_ca_carries_critical_constraints_on_root_and_intermediate(constrained):
    for cert in (constrained.root_certificate, constrained.issuer_certificate):
        nc = ext(cert, x509.NameConstraints)
        assert nc.critical
        assert set(nc.value.permitted_subtrees or ()) == {
            x509.DNSName("example.com"),
            x509.DNSName("corp.test"),
        }
        assert set(nc.value.excluded_subtrees or ()) == {
            x509.DNSName("secret.example.com"),
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        }


def _leaf_bypassing_policy(ca: CertificateAuthority, names: list[str]) -> list[x509.Certificate]:
    """What a bug in the allow-list would produce: the CA signs whatever it is given."""
    return load_chain(ca.issue_for_key(p256().public_key(), names, validity=VALIDITY).chain_pem)


def _openssl_verify(ca: CertificateAuthority, chain: list[x509.Certificate], tmp_path: Path):
    root = write(tmp_path / "root.pem", ca.root_pem.encode())
    untrusted = write(tmp_path / "untrusted.pem", pem(*chain[1:]))
    leaf = write(tmp_path / "leaf.pem", pem(chain[0]))
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(root),
            "-untrusted",
            str(untrusted),
            str(leaf),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("names", "verify_as"),
    [
        (["example.com"], "example.com"),
        (["www.example.com", "*.apps.example.com"], "www.example.com"),
        (["api.corp.test"], "api.corp.test"),
    ],
)
def test_leaf_inside_constraints_is_accepted(constrained, tmp_path, names, verify_as):
    chain = _leaf_bypassing_policy(constrained, names)
    verify_server(constrained.root_certificate, chain[0], chain[1:], DNSName(verify_as))
    result = _openssl_verify(constrained, chain, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("names", "verify_as"),
    [
        (["evil.example.org"], "evil.example.org"),
        (["badexample.com"], "badexample.com"),  # label boundary, not a string suffix
        (["db.secret.example.com"], "db.secret.example.com"),  # excluded subtree
        (["www.example.com", "bank.test"], "www.example.com"),  # one bad SAN spoils the leaf
        (["www.example.com", "10.0.0.1"], "www.example.com"),  # IP addresses are excluded
    ],
)
def test_leaf_outside_constraints_is_rejected_by_real_verifiers(
    constrained, tmp_path, names, verify_as
):
    chain = _leaf_bypassing_policy(constrained, names)
    with pytest.raises(VerificationError):
        verify_server(constrained.root_certificate, chain[0], chain[1:], DNSName(verify_as))
    result = _openssl_verify(constrained, chain, tmp_path)
    assert result.returncode != 0, result.stdout
    assert "subtree violation" in result.stderr + result.stdout


def test_permits_tells_handlers_what_verifiers_will_accept(constrained, ca):
    assert constrained.permits("a.b.example.com") and constrained.permits("*.corp.test")
    assert not constrained.permits("example.org") and not constrained.permits("10.0.0.1")
    assert not constrained.permits("x.secret.example.com")
    # `*.example.com` would serve the excluded secret.example.com: refused here, although
    # verifiers (comparing SAN text only) would accept it.
    assert not constrained.permits("*.example.com") and constrained.permits("*.www.example.com")
    assert ca.permits("example.org") and ca.permits("10.0.0.1")


def test_unconstrained_ca_lets_verifiers_accept_anything(ca, tmp_path):
    """The control: without constraints the same bypassing leaf verifies (the risk we close)."""
    chain = _leaf_bypassing_policy(ca, ["evil.example.org"])
    verify_server(load_chain(ca.root_pem)[0], chain[0], chain[1:], DNSName("evil.example.org"))
    assert _openssl_verify(ca, chain, tmp_path).returncode == 0


def test_existing_unconstrained_ca_is_refused_when_constraints_are_asked(tmp_path):
    plain = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(CAConfigError) as info:
        CertificateAuthority.load_or_create(tmp_path, constraints=PERMITTED)
    message = str(info.value)
    assert "\n" not in message
    assert "no name constraints" in message and "permitted corp.test,example.com" in message
    assert "--data-dir" in message and "--ca-permitted-domain" in message
    # Nothing was changed on disk: the old CA is still the one loaded without the flag.
    assert CertificateAuthority.load_or_create(tmp_path).root_pem == plain.root_pem


def test_existing_constrained_ca_refuses_other_constraints_and_keeps_its_own(tmp_path):
    first = CertificateAuthority.load_or_create(tmp_path, constraints=PERMITTED)
    same = NameConstraintsSpec.from_domains(["corp.test", "example.com"], ["secret.example.com"])
    assert CertificateAuthority.load_or_create(tmp_path, constraints=same).root_pem == (
        first.root_pem
    )
    other = NameConstraintsSpec.from_domains(["example.com"])
    with pytest.raises(CAConfigError, match=r"permitted corp\.test,example\.com"):
        CertificateAuthority.load_or_create(tmp_path, constraints=other)
    # Without the flags the CA is used as it is, still constrained.
    loaded = CertificateAuthority.load_or_create(tmp_path)
    assert ext(loaded.issuer_certificate, x509.NameConstraints).critical


def test_renewed_intermediate_copies_the_root_constraints(tmp_path):
    CertificateAuthority.load_or_create(tmp_path, constraints=PERMITTED)
    (tmp_path / "ca" / "intermediate.crt").unlink()
    renewed = CertificateAuthority.load_or_create(tmp_path)  # no flags given this time
    assert (
        ext(renewed.issuer_certificate, x509.NameConstraints).value
        == ext(renewed.root_certificate, x509.NameConstraints).value
    )


def test_given_ca_must_carry_the_asked_constraints(tmp_path, pki):
    root, _ = pki["root"]
    inter, inter_key = pki["inter"]
    cert = write(tmp_path / "ca.crt", pem(inter, root))
    key = write(tmp_path / "ca.key", key_pem(inter_key))
    with pytest.raises(CAConfigError, match="no name constraints"):
        CertificateAuthority.load_or_create(
            tmp_path, ca_cert=cert, ca_key=key, constraints=PERMITTED
        )


def test_serving_names_outside_constraints_are_refused(constrained, tmp_path):
    with pytest.raises(CAConfigError, match=r"127\.0\.0\.1.*--tls-name"):
        constrained.ensure_serving_certificate(tmp_path, ["www.example.com", "127.0.0.1"])
    with pytest.raises(CAConfigError, match="localhost"):
        constrained.ensure_serving_certificate(tmp_path, ["localhost"])
    cert_path, _ = constrained.ensure_serving_certificate(tmp_path, ["acme.corp.test"])
    chain = load_chain(cert_path.read_text())
    verify_server(constrained.root_certificate, chain[0], chain[1:], DNSName("acme.corp.test"))
