"""CSR parsing and checks (acme_server/ca/csr.py) under arbitrary and mutated DER.

Properties: any bytes parse or raise CSRError; a parsed CSR is checked or refused with
CSRError (never another exception); a CSR that passes names exactly the order's names.
The name-constraint check the serving certificate uses agrees with a real verifier.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given
from hypothesis import strategies as st

from acme_server.ca import CertificateAuthority, CSRError, check_csr, parse_csr, spki_sha256
from acme_server.ca.constraints import NameConstraintsSpec, of_certificate, permits
from tests.fuzz.strategies import FUZZ, budget

KEY = ec.generate_private_key(ec.SECP256R1())
ACCOUNT_SPKI = spki_sha256(ec.generate_private_key(ec.SECP256R1()).public_key())
dns_names = st.from_regex(r"\A([a-z0-9]{1,6}\.){1,3}(test|com|org)\Z")


def csr_der(names: list[str], cn: str | None = None) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


BASE = csr_der(["www.example.com", "example.com"], "example.com")


def parse_and_check(der: bytes, expected: list[str]) -> bool:
    """True when the CSR is accepted; CSRError is the only other allowed outcome."""
    try:
        check_csr(parse_csr(der), expected, account_key_spki_sha256=ACCOUNT_SPKI)
    except CSRError as exc:
        assert str(exc)
        return False
    return True


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_are_refused(der: bytes) -> None:
    assert not parse_and_check(der, ["example.com"])


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), max_size=6),
    st.integers(0, len(BASE)),
)
def test_mutated_csr_is_checked_or_refused(edits: list[tuple[int, int]], cut: int) -> None:
    der = bytearray(BASE)
    for position, value in edits:
        der[position] = value
    parse_and_check(bytes(der[:cut] if cut else der), ["example.com", "www.example.com"])


@budget(100)
@given(
    st.lists(dns_names, min_size=1, max_size=4),
    st.lists(dns_names, min_size=1, max_size=4),
    st.booleans(),
)
def test_accepted_csr_names_exactly_the_order(
    in_csr: list[str], ordered: list[str], with_cn: bool
) -> None:
    accepted = parse_and_check(csr_der(in_csr, in_csr[0] if with_cn else None), ordered)
    assert accepted == (set(in_csr) == set(ordered))


CONSTRAINTS = NameConstraintsSpec.from_domains(["example.com", "corp.test"], ["secret.example.com"])


@pytest.fixture(scope="module")
def constrained(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(
        tmp_path_factory.mktemp("fuzz-ca"), constraints=CONSTRAINTS
    )


@budget(80)
@given(
    name=st.from_regex(
        r"\A(\*\.)?([a-z0-9]{1,6}\.){0,2}(secret\.)?(example\.com|corp\.test|test|org)\Z"
    )
)
def test_constraint_check_agrees_with_a_real_verifier(
    constrained: CertificateAuthority, name: str
) -> None:
    chain = x509.load_pem_x509_certificates(
        constrained.issue_for_key(
            KEY.public_key(), [name], validity=timedelta(days=1)
        ).chain_pem.encode()
    )
    host = "host" + name[1:] if name.startswith("*.") else name
    verifier = (
        PolicyBuilder()
        .store(Store([constrained.root_certificate]))
        .build_server_verifier(x509.DNSName(host))
    )
    try:
        verifier.verify(chain[0], chain[1:])
        accepted = True
    except VerificationError:
        accepted = False
    ours = permits(of_certificate(constrained.issuer_certificate), name)
    if name.startswith("*."):
        assert accepted or not ours, name  # ours may only be stricter for wildcards
    else:
        assert ours == accepted, name
