"""What the fuzz tests share: a reproducible budget, input strategies, and a JWS signer.

Every test uses FUZZ (or a smaller variant): derandomized and without an example database,
so a CI run explores exactly the same inputs every time and a failure reproduces locally.
"""

from __future__ import annotations

import json
import os
from typing import Any

import josepy
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from acme_server.encoding import b64url_encode

# Shrinking a failure can take far longer than the search itself; the regular run reports
# the failing input as found, and ACME_FUZZ_SHRINK=1 asks for a minimal one when debugging.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
if os.environ.get("ACME_FUZZ_SHRINK") == "1":
    PHASES += [Phase.shrink, Phase.explain]


def budget(max_examples: int) -> settings:
    """A fixed, reproducible budget (the whole fuzz dir must stay well under 2 minutes)."""
    return settings(
        max_examples=max_examples,
        phases=PHASES,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.large_base_example,
        ],
    )


FUZZ = budget(200)

# JSON values of bounded depth: the shapes a parser meets in ordinary hostile traffic.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

# Member names a JWS/JWK parser looks at, mixed with arbitrary ones.
JOSE_KEYS = [
    "protected",
    "payload",
    "signature",
    "header",
    "signatures",
    "alg",
    "kid",
    "jwk",
    "nonce",
    "url",
    "crit",
    "b64",
    "kty",
    "crv",
    "x",
    "y",
    "n",
    "e",
    "d",
]
jose_keys = st.sampled_from(JOSE_KEYS) | st.text(max_size=8)


def jose_objects(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(jose_keys, values, max_size=6)


# base64url text, canonical or not, and plain garbage.
b64_texts = (
    st.binary(max_size=64).map(b64url_encode)
    | st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .\n",
        max_size=64,
    )
    | st.text(max_size=20)
)


def deeply_nested(depth: int, kind: str) -> str:
    """`[[[...]]]` or `{"a":{"a":...}}` nested `depth` levels (RecursionError bait)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


nesting = st.tuples(
    st.integers(min_value=500, max_value=200_000), st.sampled_from(["list", "dict"])
)


@st.composite
def non_canonical_b64(draw: st.DrawFn, data: bytes) -> str:
    """A spelling of `data` that is not the canonical unpadded base64url text.

    Every draw happens up front, whatever `data` is: `data` may come from a server (a fresh
    nonce), and hypothesis refuses strategies whose draws depend on values it cannot replay.
    """
    text = b64url_encode(data)
    how = draw(st.sampled_from(["pad", "std-alphabet", "space", "trailing-bits", "newline"]))
    bump = draw(st.integers(min_value=1, max_value=15))
    where = draw(st.floats(min_value=0, max_value=1))
    if how == "pad" and len(text) % 4:
        return text + "=" * (-len(text) % 4)
    if how == "std-alphabet" and ("-" in text or "_" in text):
        return text.replace("-", "+").replace("_", "/")
    if how == "trailing-bits" and len(text) % 4 in (2, 3):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        index = alphabet.index(text[-1])
        spare = 4 if len(text) % 4 == 2 else 2  # unused low bits in the last character
        bumped = alphabet[index | (1 + (bump - 1) % ((1 << spare) - 1))]
        if bumped != text[-1]:
            return text[:-1] + bumped
    if how == "newline" and len(text) > 4:
        return text[:4] + "\n" + text[4:]
    position = round(where * len(text))
    return text[:position] + " " + text[position:]


class Signer:
    """An ES256 key that signs flattened JWS objects, as an ACME client would."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = josepy.JWKEC(key=self.key.public_key()).to_partial_json()

    def sign(self, protected: dict[str, Any] | str, payload: bytes | str) -> dict[str, str]:
        protected_b64 = (
            protected
            if isinstance(protected, str)
            else b64url_encode(json.dumps(protected).encode())
        )
        payload_b64 = payload if isinstance(payload, str) else b64url_encode(payload)
        der = self.key.sign(f"{protected_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return {
            "protected": protected_b64,
            "payload": payload_b64,
            "signature": b64url_encode(signature),
        }
