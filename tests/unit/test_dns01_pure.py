"""dns-01's pure parts: the TXT value, resolver addresses and settings, the challenge name.
(The validation itself runs against BIND9 in tests/validation/test_dns01.py.)"""

from __future__ import annotations

import base64
import hashlib

import dns.name
import pytest

from acme_server.validation import dns01_txt_value, make_resolver
from acme_server.validation.resolver import parse_nameserver


def test_txt_value_is_unpadded_base64url_sha256() -> None:
    key_auth = "token.thumbprint"
    digest = hashlib.sha256(key_auth.encode()).digest()
    assert dns01_txt_value(key_auth) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(dns01_txt_value(key_auth)) == 43
    # RFC 8555 §8.4 example-style check: no padding, URL-safe alphabet only.
    assert "=" not in dns01_txt_value(key_auth)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5300", ("::1", 5300)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("localhost:54", ("127.0.0.1", 54)),
    ],
)
def test_parse_nameserver(text: str, expected: tuple[str, int]) -> None:
    if text.startswith("localhost"):
        assert parse_nameserver(text)[1] == expected[1]
    else:
        assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["", "1.2.3.4:0", "1.2.3.4:99999", "[::1", "[::1]x", "h:p"])
def test_parse_nameserver_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"DNS resolver|empty"):
        parse_nameserver(text)


def test_make_resolver_has_no_cache_and_bounded_lifetime() -> None:
    resolver = make_resolver(["127.0.0.1:5353", "[::1]:53"], timeout=3.0)
    assert resolver.cache is None
    assert resolver.lifetime == 3.0
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [  # type: ignore[union-attr]
        ("127.0.0.1", 5353),
        ("::1", 53),
    ]


def test_challenge_name_ignores_trailing_dot() -> None:
    from acme_server.validation.dns01 import challenge_name

    assert challenge_name("*.Foo.example.") == "_acme-challenge.Foo.example"
    assert dns.name.from_text(challenge_name("a.example")).labels[0] == b"_acme-challenge"


@pytest.mark.parametrize(
    ("budget", "delays"),
    [
        (10, [1, 2, 4, 3, None]),  # the default: attempts at 0, 1, 3, 7 and 10 s
        (6, [1, 2, 3, None]),  # at 0, 1, 3, 6 s
        (2.5, [1, 1.5, None]),
        (0, [None]),  # one attempt, no retry
        (100, [1, 2, 4, 8, 16, 30, 30, 9, None]),  # steps stop doubling at 30 s
    ],
)
def test_dns01_retry_plan_ends_exactly_at_the_budget(
    budget: float, delays: list[float | None]
) -> None:
    from acme_server.validation.dns01 import retry_delay

    planned = [retry_delay(failed, budget) for failed in range(1, len(delays) + 1)]
    assert planned == delays
    assert sum(d for d in planned if d is not None) == budget
    assert retry_delay(len(delays) + 5, budget) is None


def test_perspectives_quorum_defaults_to_all_and_is_bounded() -> None:
    from acme_server.validation.resolver import make_perspectives

    both = make_perspectives(["127.0.0.1:5353", "127.0.0.2:5353"])
    assert both.quorum == 2
    assert [len(r.nameservers) for r in both.resolvers] == [1, 1]  # asked on their own
    assert make_perspectives([], 0).quorum == 1  # the system resolver is one perspective
    with pytest.raises(ValueError, match="quorum 3 must be between 1 and the number of DNS"):
        make_perspectives(["127.0.0.1:5353", "127.0.0.2:5353"], 3)
