"""The one base64url codec refuses every second spelling of a value."""

from __future__ import annotations

import pytest

from acme_server.encoding import b64url_decode, b64url_encode


@pytest.mark.parametrize("data", [b"", b"\x00", b"ab", b"abc", bytes(range(256))])
def test_round_trip(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        "YQ==",  # padding
        "YQ=",
        "Y Q",  # whitespace
        "YQ\n",
        "a+b/",  # standard alphabet
        "abcde",  # impossible length
        "YR",  # non-zero trailing bits: a second spelling of "a"
        "AAB",  # the same for two bytes
    ],
)
def test_refuses_non_canonical(text: str) -> None:
    with pytest.raises(ValueError):
        b64url_decode(text)


def test_refuses_non_string() -> None:
    with pytest.raises(ValueError):
        b64url_decode(b"YQ")  # type: ignore[arg-type]
