"""The built-in certificate authority: loads or creates the CA, then issues leaves.

A `CertificateAuthority` is immutable after construction, so `issue()` may run on any
number of executor threads at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from acme_server.ca import generated, given, serving
from acme_server.ca.constraints import NameConstraintsSpec, check_matches, of_certificate, permits
from acme_server.ca.crl import build_crl
from acme_server.ca.errors import CAConfigError
from acme_server.ca.keys import spki_sha256, spki_sha256_of_jwk
from acme_server.ca.ocsp_responder import ResponderHolder
from acme_server.ca.profile import (
    BACKDATE,
    LeafOptions,
    RevocationPointers,
    build_leaf,
    issuer_key_id,
)
from acme_server.ca.revocation_urls import RevocationUrls

__all__ = [
    "CAConfigError",
    "CertificateAuthority",
    "IssuedCertificate",
    "spki_sha256",
    "spki_sha256_of_jwk",
]

SERVING_VALIDITY = timedelta(days=90)


@dataclass(frozen=True)
class IssuedCertificate:
    serial_hex: str  # lower-case hex, no 0x
    leaf_pem: str
    chain_pem: str  # leaf + intermediates, no root, one "\n" between PEMs (erratum 5983)
    not_before: datetime  # aware UTC
    not_after: datetime
    spki_sha256: str  # hex SHA-256 of the leaf's DER SubjectPublicKeyInfo
    names: list[str]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


class CertificateAuthority:
    """An issuing certificate and key, the chain served above it, and the root to trust."""

    def __init__(
        self,
        *,
        root: x509.Certificate,
        issuer: x509.Certificate,
        issuer_key: CertificateIssuerPrivateKeyTypes,
        intermediates: Sequence[x509.Certificate] = (),
        previous_issuers: Sequence[x509.Certificate] = (),
        leaf_client_auth: bool = False,
        revocation_base_url: str | None = None,
    ) -> None:
        self.root_certificate = root
        self.leaf_client_auth = leaf_client_auth
        self.issuer_certificate = issuer
        self._name_constraints = of_certificate(issuer)  # read once; checked per order
        self._issuer_key = issuer_key
        served = [] if given.is_self_signed(issuer) else [issuer, *intermediates]
        self.issuer_chain_pem = "".join(_pem(c) for c in served)
        self.root_pem = _pem(root)
        self._known_issuers = (issuer, *previous_issuers)
        self.issuer_key_id = issuer_key_id(issuer)
        # Revocation information (issue 12): leaves point at it only when it is served.
        self.revocation_urls = RevocationUrls(revocation_base_url) if revocation_base_url else None
        self._pointers: RevocationPointers | None = (
            self.revocation_urls.pointers(self.issuer_key_id.hex())
            if self.revocation_urls
            else None
        )
        self.ocsp_responders = ResponderHolder(issuer, issuer_key)

    @classmethod
    def load_or_create(
        cls,
        data_dir: Path,
        *,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        constraints: NameConstraintsSpec | None = None,
        leaf_client_auth: bool = False,
        revocation_base_url: str | None = None,
    ) -> CertificateAuthority:
        """The operator's CA when `ca_cert`/`ca_key` are given, else the one in the data dir.

        Non-empty `constraints` must be carried by the CA (a new generated CA gets them);
        `leaf_client_auth` adds the clientAuth EKU to ACME leaves.
        """
        if (ca_cert is None) != (ca_key is None):
            raise CAConfigError("--ca-cert and --ca-key must be given together")
        wanted = constraints or None
        if ca_cert is not None and ca_key is not None:
            g = given.load_given(ca_cert, ca_key)
            if wanted is not None:
                check_matches(g.issuer, wanted, f"the CA given by {ca_cert}")
            return cls(
                root=g.root,
                issuer=g.issuer,
                issuer_key=g.issuer_key,
                intermediates=g.intermediates,
                leaf_client_auth=leaf_client_auth,
                revocation_base_url=revocation_base_url,
            )
        ca = generated.load_or_create(data_dir / "ca", wanted)
        return cls(
            root=ca.root,
            issuer=ca.issuer,
            issuer_key=ca.issuer_key,
            previous_issuers=ca.previous_issuers,
            leaf_client_auth=leaf_client_auth,
            revocation_base_url=revocation_base_url,
        )

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        names: list[str],
        *,
        validity: timedelta,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        options: LeafOptions | None = None,
    ) -> IssuedCertificate:
        """Sign an ACME leaf for `names` with the CSR's key (the CSR is assumed checked
        already) as the certificate profile's `options` say; clientAuth also when this CA
        was configured with `leaf_client_auth`."""
        options = options or LeafOptions()
        return self.issue_for_key(
            csr.public_key(),
            names,
            validity=validity,
            not_before=not_before,
            not_after=not_after,
            client_auth=self.leaf_client_auth or options.client_auth,
            server_auth=options.server_auth,
            common_name=options.common_name,
            revocation=self._pointers if options.revocation_info else None,
        )

    def issue_for_key(
        self,
        public_key: CertificatePublicKeyTypes,
        names: Sequence[str],
        *,
        validity: timedelta,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        client_auth: bool = False,
        server_auth: bool = True,
        common_name: bool = True,
        revocation: RevocationPointers | None = None,
    ) -> IssuedCertificate:
        """Sign a leaf for `names` and `public_key`, clamped to the issuer's validity."""
        unique = list(dict.fromkeys(names))
        now = datetime.now(UTC).replace(microsecond=0)
        start = _utc(not_before, "not_before") if not_before is not None else now - BACKDATE
        if not_after is not None:
            end = _utc(not_after, "not_after")
        else:
            end = (start if not_before is not None else now) + validity
        issuer = self.issuer_certificate
        start = max(start, issuer.not_valid_before_utc)
        end = min(end, issuer.not_valid_after_utc)
        if end <= start:
            raise ValueError(
                f"no validity left: requested {start}..{end}, issuer valid until "
                f"{issuer.not_valid_after_utc}"
            )
        cert = build_leaf(
            public_key,
            unique,
            issuer,
            self._issuer_key,
            start,
            end,
            client_auth=client_auth,
            server_auth=server_auth,
            common_name=common_name,
            revocation=revocation,
        )
        leaf_pem = _pem(cert)
        return IssuedCertificate(
            serial_hex=f"{cert.serial_number:x}",
            leaf_pem=leaf_pem,
            chain_pem=leaf_pem + self.issuer_chain_pem,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            spki_sha256=spki_sha256(public_key),
            names=unique,
        )

    def ensure_serving_certificate(
        self, data_dir: Path, names: list[str], *, validity: timedelta = SERVING_VALIDITY
    ) -> tuple[Path, Path]:
        """(chain path, key path) of the HTTPS certificate for `names`, reissued when due."""
        return serving.ensure(self, data_dir / "tls", names, validity)

    def permits(self, name: str) -> bool:
        """Whether verifiers would accept a leaf of ours for `name` under the issuing
        certificate's name constraints (always True for an unconstrained CA)."""
        return permits(self._name_constraints, name)

    def issued_by_us(self, cert: x509.Certificate) -> bool:
        """True when `cert` was signed by this CA's issuing key (or a retired one of ours)."""
        for issuer in self._known_issuers:
            if cert.issuer != issuer.subject:
                continue
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False

    def sign_crl(
        self,
        entries: Sequence[tuple[int, datetime, int | None]],
        *,
        number: int,
        this_update: datetime,
        next_update: datetime,
    ) -> bytes:
        """The issuing CA's DER CRL listing `entries` (serial, revocation time, reason)."""
        return build_crl(
            self.issuer_certificate,
            self._issuer_key,
            entries,
            number=number,
            this_update=this_update,
            next_update=min(next_update, self.issuer_certificate.not_valid_after_utc),
        )
