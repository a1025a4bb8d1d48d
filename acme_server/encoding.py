"""The project's one base64url codec (RFC 4648 §5, unpadded, as JOSE and ACME use it).

Decoding is strict so that one value has exactly one spelling: a nonce, a key or a
signature written two ways must never count as two different things (or as one thing
spent twice).
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url text of `data`."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Bytes of canonical unpadded base64url `text`; anything else raises ValueError.

    Refused: characters outside the URL-safe alphabet (including `=`, `+`, `/` and
    whitespace), an impossible length, and non-zero trailing bits (which would let
    several strings decode to the same bytes).
    """
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text):
        raise ValueError("not unpadded base64url")
    if len(text) % 4 == 1:
        raise ValueError("base64url text has an impossible length")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if b64url_encode(raw) != text:
        raise ValueError("base64url text is not canonical (non-zero padding bits)")
    return raw
