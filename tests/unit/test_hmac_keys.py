"""EAB HMAC keys: generated and checked with the project's strict base64url codec."""

from __future__ import annotations

import pytest

from acme_server.encoding import b64url_decode
from acme_server.store.registrations import (
    HMAC_KEY_BYTES,
    RegistrationError,
    generate_hmac_key,
    validate_hmac_key,
)

GOOD = "A" * 43  # 32 zero bytes


def test_generated_keys_are_canonical_and_accepted() -> None:
    key = generate_hmac_key()
    assert len(b64url_decode(key)) == HMAC_KEY_BYTES
    assert validate_hmac_key(key) == key
    assert validate_hmac_key(GOOD) == GOOD


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (GOOD + "=", "drop the trailing '=' padding"),
        ("A" * 42 + "+", "'+' not allowed"),
        ("A" * 20 + "/" + "A" * 22, "'/' not allowed"),
        ("A" * 21 + " " + "A" * 21, "' ' not allowed"),
        ("A" * 42 + "B", "non-zero padding bits"),  # same bytes as another spelling
        ("A" * 45, "impossible length"),
        ("A" * 42, f"at least {HMAC_KEY_BYTES} bytes, it holds 31"),
    ],
)
def test_bad_keys_say_what_is_wrong(key: str, says: str) -> None:
    with pytest.raises(RegistrationError) as caught:
        validate_hmac_key(key)
    assert says in str(caught.value)
