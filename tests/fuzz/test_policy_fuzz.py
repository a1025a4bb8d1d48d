"""Identifier normalisation and allow-list matching (acme_server/domain/identifiers.py).

Properties: a name normalises or raises IdentifierError; normalising is idempotent and
yields lower-case A-label DNS syntax; a rule covers only names on a label boundary.
"""

from __future__ import annotations

import ipaddress
import re

from hypothesis import given
from hypothesis import strategies as st

from acme_server.domain.identifiers import (
    DomainRule,
    IdentifierError,
    IPAddress,
    MalformedIP,
    ip_in_ranges,
    is_allowed,
    normalise_dns_name,
    normalise_ip,
    parse_ip_range,
)
from tests.fuzz.strategies import FUZZ

LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
NORMAL = re.compile(rf"^(\*\.)?{LABEL}(\.{LABEL})+$")

dns_like = st.from_regex(r"\A(\*\.)?([a-zA-Z0-9-]{1,8}\.){1,4}[a-zA-Z]{2,6}\Z")
names = (
    dns_like
    | st.text(alphabet="abcXYZ019-.*_ \u00fc\u0130\u212a\u3002\uff0e\u200d", max_size=30)
    | st.text(max_size=30)
)


def normalised_or_none(value: str) -> str | None:
    try:
        return normalise_dns_name(value)
    except IdentifierError:
        return None


@FUZZ
@given(names)
def test_normalise_is_total_idempotent_and_strict(value: str) -> None:
    name = normalised_or_none(value)
    if name is None:
        return
    assert NORMAL.match(name), name
    assert len(name.removeprefix("*.")) <= 253
    assert normalise_dns_name(name) == name


@FUZZ
@given(dns_like, dns_like, st.booleans(), st.booleans())
def test_rules_cover_only_whole_labels(
    requested: str, domain: str, include_subdomains: bool, allow_wildcard: bool
) -> None:
    name, base = normalised_or_none(requested), normalised_or_none(domain.removeprefix("*."))
    if name is None or base is None:
        return
    rule = DomainRule(base, include_subdomains, allow_wildcard)
    if not is_allowed(name, [rule]):
        return
    host = name.removeprefix("*.")
    assert host == base or (include_subdomains and host.endswith("." + base)), (name, rule)
    if name.startswith("*."):
        assert allow_wildcard, (name, rule)


@FUZZ
@given(dns_like, dns_like)
def test_a_suffix_that_is_not_a_label_never_matches(prefix: str, domain: str) -> None:
    base = normalised_or_none(domain.removeprefix("*."))
    glued = normalised_or_none(prefix.removeprefix("*.").split(".")[0] + base if base else "")
    if base is None or glued is None or glued == base:
        return
    assert not is_allowed(glued, [DomainRule(base)]), (glued, base)


@FUZZ
@given(dns_like, dns_like, st.booleans())
def test_a_wildcard_needs_subdomains_and_wildcards(
    requested: str, domain: str, allow_wildcard: bool
) -> None:
    """Issue 8 item 2: `*.x` covers x's subdomains, so a rule without them cannot allow it."""
    name, base = normalised_or_none(requested), normalised_or_none(domain.removeprefix("*."))
    if name is None or base is None:
        return
    wildcard = "*." + name.removeprefix("*.")
    assert not is_allowed(wildcard, [DomainRule(base, False, allow_wildcard)]), (wildcard, base)
    assert not is_allowed("*." + base, [DomainRule(base, False, allow_wildcard)])


# --- RFC 8738 ip identifiers ---------------------------------------------------------------


@FUZZ
@given(address=st.ip_addresses())
def test_every_address_has_one_accepted_spelling(address: IPAddress) -> None:
    """str() of an address is accepted as is; its exploded form only when identical, else
    refused naming the canonical form (IPv4-mapped IPv6 is refused in every spelling)."""
    ip = ipaddress.ip_address(address)
    mapped = isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
    for spelling in {str(ip), ip.exploded, str(ip).upper()}:
        try:
            assert normalise_ip(spelling) == str(ip) == spelling and not mapped
        except MalformedIP as exc:
            assert spelling != str(ip) and f"write it as {ip}" in str(exc)
        except IdentifierError as exc:
            assert mapped and "IPv4-mapped" in str(exc)


@FUZZ
@given(value=st.text(alphabet="0123456789abcdefABCDEF:.%/* x", max_size=45) | st.text(max_size=20))
def test_ip_values_are_canonical_or_refused(value: str) -> None:
    try:
        assert str(ipaddress.ip_address(normalise_ip(value))) == value
    except IdentifierError:
        pass


@FUZZ
@given(address=st.ip_addresses(), prefix=st.integers(0, 128))
def test_ranges_cover_only_their_own_family(address: IPAddress, prefix: int) -> None:
    ip = ipaddress.ip_address(address)
    net = ipaddress.ip_network(f"{ip}/{min(prefix, ip.max_prefixlen)}", strict=False)
    try:
        cidr = parse_ip_range(str(net))
    except IdentifierError:
        assert net.version == 6 and net.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96"))
        return
    assert ip_in_ranges(str(ip), [cidr])
    other = "::1" if ip.version == 4 else "127.0.0.1"
    assert not ip_in_ranges(other, [cidr])
