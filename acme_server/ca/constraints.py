"""X.509 name constraints for the built-in CA: the last line of defence behind the allow-list.

When an operator asks for them (`--ca-permitted-domain`, `--ca-excluded-domain`), the
generated root and intermediate both carry a critical NameConstraints extension. Every
RFC 5280 verifier enforces it on the intermediate; most (OpenSSL, Go, cryptography) also on
the root. Because this server issues DNS names only, a constrained CA also excludes every IP
address, so no bug in our policy code can mint a certificate a verifier accepts elsewhere.
Constraints are fixed when the CA is created: asking for different ones later is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import idna
from cryptography import x509

from acme_server.ca.errors import CAConfigError

ALL_IPV4 = ipaddress.ip_network("0.0.0.0/0")
ALL_IPV6 = ipaddress.ip_network("::/0")


def _normalise_domain(value: str) -> str:
    """A-label, lower-case, no trailing dot; refuses wildcards and IP literals."""
    name = value.strip().rstrip(".").lstrip(".")
    if not name or "*" in name:
        raise CAConfigError(f"CA name constraint {value!r}: give a domain such as example.com")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise CAConfigError(f"CA name constraint {value!r} is an IP address, not a domain")
    try:
        return idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise CAConfigError(f"CA name constraint {value!r} is not a valid domain: {exc}") from None


@dataclass(frozen=True)
class NameConstraintsSpec:
    """Permitted and excluded DNS subtrees, normalised and sorted (so equal specs compare equal)."""

    permitted: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    @classmethod
    def from_domains(
        cls, permitted: Iterable[str] = (), excluded: Iterable[str] = ()
    ) -> NameConstraintsSpec:
        return cls(
            tuple(sorted({_normalise_domain(d) for d in permitted})),
            tuple(sorted({_normalise_domain(d) for d in excluded})),
        )

    def __bool__(self) -> bool:
        return bool(self.permitted or self.excluded)

    def extension(self) -> x509.NameConstraints:
        """The extension value: our DNS subtrees, and every IP address excluded."""
        excluded: list[x509.GeneralName] = [x509.DNSName(d) for d in self.excluded]
        excluded += [x509.IPAddress(ALL_IPV4), x509.IPAddress(ALL_IPV6)]
        permitted = [x509.DNSName(d) for d in self.permitted] or None
        return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)

    def describe(self) -> str:
        if not self:
            return "no name constraints"
        parts = []
        if self.permitted:
            parts.append("permitted " + ",".join(self.permitted))
        if self.excluded:
            parts.append("excluded " + ",".join(self.excluded))
        return "name constraints " + "; ".join(parts)


def of_certificate(cert: x509.Certificate) -> x509.NameConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None


def _subtrees(nc: x509.NameConstraints | None) -> tuple[frozenset[object], frozenset[object]]:
    if nc is None:
        return frozenset(), frozenset()
    return frozenset(nc.permitted_subtrees or ()), frozenset(nc.excluded_subtrees or ())


def _describe_found(nc: x509.NameConstraints | None) -> str:
    if nc is None:
        return "no name constraints"
    permitted, excluded = _subtrees(nc)
    shown = [
        f"{kind} " + ",".join(sorted(str(getattr(n, "value", n)) for n in names))
        for kind, names in (("permitted", permitted), ("excluded", excluded))
        if names
    ]
    return "name constraints " + "; ".join(shown)


def check_matches(cert: x509.Certificate, spec: NameConstraintsSpec, where: str) -> None:
    """Refuse (one line, saying what to do) when `cert` does not carry exactly `spec`."""
    found = of_certificate(cert)
    if _subtrees(found) == _subtrees(spec.extension() if spec else None):
        return
    raise CAConfigError(
        f"{where} has {_describe_found(found)} but this server was asked for "
        f"{spec.describe()}; constraints are fixed when a CA is created: start with an empty "
        "--data-dir (a new CA whose root clients must trust) or change the "
        "--ca-permitted-domain/--ca-excluded-domain flags to match"
    )


def _dns_in(name: str, subtree: str) -> bool:
    name, subtree = name.lower().rstrip("."), subtree.lower().lstrip(".")
    return not subtree or name == subtree or name.endswith("." + subtree)


def _networks(
    names: Iterable[x509.GeneralName],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = (n.value for n in names if isinstance(n, x509.IPAddress))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network)]


def permits(nc: x509.NameConstraints | None, name: str) -> bool:
    """Whether a leaf naming `name` (DNS name or IP literal) satisfies `nc` (RFC 5280 4.2.1.10)."""
    if nc is None:
        return True
    permitted, excluded = nc.permitted_subtrees or [], nc.excluded_subtrees or []
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        nets_in = _networks(permitted)
        nets_out = _networks(excluded)
        if any(ip in net for net in nets_out):
            return False
        return not nets_in or any(ip in net for net in nets_in)
    wildcard = name.startswith("*.")
    dns = name[2:] if wildcard else name
    dns_in = [n.value for n in permitted if isinstance(n, x509.DNSName)]
    dns_out = [n.value for n in excluded if isinstance(n, x509.DNSName)]
    if any(_dns_in(dns, d) for d in dns_out):
        return False
    # Stricter than verifiers, which compare the SAN text only: `*.x` would also serve the
    # excluded host `e.x`, so it is refused too.
    if wildcard and any(d.lower().lstrip(".").partition(".")[2] == dns for d in dns_out):
        return False
    return not dns_in or any(_dns_in(dns, d) for d in dns_in)
