"""The address policy validation connects through (issue 8, item 7): pure unit tests."""

from __future__ import annotations

import pytest

from acme_server.validation.addresses import BUILTIN_DENY, AddressPolicy, parse_cidrs

STRICT = AddressPolicy()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata (AWS, GCP, Azure, OpenStack)
        ("169.254.0.1", "link-local"),
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.8", "IETF protocol assignments"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::7f00:1", "IPv4-compatible IPv6 (deprecated)"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("febf:ffff::1", "link-local"),
        ("fec0::1", "site-local (deprecated)"),
        ("ff02::1", "multicast"),
        ("100::1", "discard-only"),
        ("2001:db8::1", "documentation"),
        ("2001:0:4136:e378::1", "Teredo"),
        ("64:ff9b:1::1", "NAT64 local use"),
        ("fd00:ec2::254", "cloud metadata"),
        # IPv6 spellings of forbidden IPv4 addresses are judged by the IPv4 address
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("::ffff:224.0.0.1", "multicast"),
        ("::ffff:255.255.255.255", "broadcast"),
        ("64:ff9b::127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),
    ],
)
def test_refused_by_default(address: str, reason: str) -> None:
    assert STRICT.refusal(address) == reason
    assert not STRICT.allows(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "10.0.0.1",  # RFC 1918 stays allowed: a private CA validates private names
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # shared address space (often a cluster's pod network)
        "169.253.255.255",
        "169.255.0.0",
        "2606:4700::1111",
        "fd12:3456::1",  # ULA, the IPv6 counterpart of RFC 1918
        "fc00::1",
        "::ffff:10.0.0.1",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",  # NAT64 of a public address
        "2002:5db8:d822::1",  # 6to4 of a public address
    ],
)
def test_allowed_by_default(address: str) -> None:
    assert STRICT.refusal(address) is None


def test_every_builtin_range_is_refused_at_both_ends() -> None:
    import ipaddress

    for cidr, reason in BUILTIN_DENY:
        net = ipaddress.ip_network(cidr)
        for address in (net.network_address, net.broadcast_address):
            assert STRICT.refusal(address) is not None, (cidr, reason, address)


def test_allow_exempts_a_range_from_the_builtin_list() -> None:
    policy = AddressPolicy.from_strings(allow=["127.0.0.0/8", "::1/128"])
    assert policy.allows("127.0.0.1")
    assert policy.allows("127.3.2.1")
    assert policy.allows("::1")
    assert policy.allows("::ffff:127.0.0.1")  # the mapped spelling follows its IPv4 address
    assert policy.refusal("169.254.169.254") == "link-local"  # nothing else is opened
    assert policy.refusal("::ffff:169.254.169.254") == "link-local"
    assert policy.refusal("0.0.0.0") == "unspecified"


def test_narrow_allow_keeps_the_rest_of_the_range_refused() -> None:
    policy = AddressPolicy.from_strings(allow=["127.0.0.1/32"])
    assert policy.allows("127.0.0.1")
    assert policy.refusal("127.0.0.2") == "loopback"
    assert policy.refusal("::1") == "loopback"


def test_deny_adds_ranges_including_private_ones() -> None:
    policy = AddressPolicy.from_strings(deny=["10.0.0.0/8", "fd00::/8", "93.184.216.34"])
    assert policy.refusal("10.1.2.3") == "denied by the server's configuration"
    assert policy.refusal("::ffff:10.1.2.3") == "denied by the server's configuration"
    assert policy.refusal("fd00::1") == "denied by the server's configuration"
    assert policy.refusal("93.184.216.34") == "denied by the server's configuration"
    assert policy.refusal("64:ff9b::5db8:d822") == "denied by the server's configuration"
    assert policy.allows("192.168.0.1")
    assert policy.refusal("127.0.0.1") == "loopback"


def test_deny_wins_over_allow() -> None:
    policy = AddressPolicy.from_strings(allow=["127.0.0.0/8", "10.0.0.0/8"], deny=["127.0.0.2/32"])
    assert policy.allows("127.0.0.1")
    assert policy.refusal("127.0.0.2") == "denied by the server's configuration"
    policy = AddressPolicy.from_strings(allow=["10.0.0.5/32"], deny=["10.0.0.0/8"])
    assert policy.refusal("10.0.0.5") == "denied by the server's configuration"


def test_parse_cidrs() -> None:
    assert [str(n) for n in parse_cidrs(["10.0.0.0/8", " ::1 ", "192.168.1.7/24"])] == [
        "10.0.0.0/8",
        "::1/128",
        "192.168.1.0/24",
    ]
    with pytest.raises(ValueError, match="invalid CIDR 'ten'"):
        parse_cidrs(["ten"])
    with pytest.raises(ValueError, match="invalid CIDR"):
        parse_cidrs(["10.0.0.0/33"])
