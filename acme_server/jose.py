"""JOSE for ACME: flattened JWS parsing and verification, account keys, EAB MACs.

Every key has exactly one JWK and one thumbprint: members are decoded with the project's
strict base64url codec and must be canonical (RSA integers without leading zero octets, EC
coordinates of the curve's exact length, Ed25519 points with y < p), so one key can never be
spelled two ways and make two accounts. Keys are built with `cryptography` directly; josepy
only checks RSA/ECDSA signatures (it has no EdDSA). Everything raises AcmeProblem with the
RFC 8555 error type a client should see.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import josepy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acme_server import strict_json
from acme_server.ca.keys import RSA_MAX_BITS, RSA_MIN_BITS, spki_sha256
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.encoding import b64url_decode, b64url_encode

# alg -> (kty, curve or None)
SIGNATURE_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
MAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
# curve name -> (cryptography curve, coordinate length in octets)
EC_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
ED25519_P = 2**255 - 19
KEY_CACHE_ENTRIES = 10_000


def b64u_decode(text: Any, what: str) -> bytes:
    """Strictly decode a base64url member (see acme_server.encoding) or refuse it as malformed."""
    try:
        return b64url_decode(text)
    except ValueError:
        raise AcmeProblem(
            ProblemType.MALFORMED, f"{what} is not canonical unpadded base64url"
        ) from None


b64u_encode = b64url_encode


@dataclass(frozen=True)
class AccountKey:
    """A client public key with its RFC 7638 thumbprint and canonical JWK."""

    jwk: dict[str, Any]
    thumbprint: str
    public_key: Any  # cryptography public key
    kty: str
    crv: str | None

    def spki_sha256(self) -> str:
        return spki_sha256(self.public_key)


class KeyCache:
    """Parsed keys by thumbprint, least recently used first out.

    Only keys that verified a signature are put here, so unauthenticated requests (with
    any junk members in their JWK) can neither grow it nor pin memory.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, AccountKey] = OrderedDict()

    def get(self, thumbprint: str) -> AccountKey | None:
        key = self._entries.get(thumbprint)
        if key is not None:
            self._entries.move_to_end(thumbprint)
        return key

    def put(self, key: AccountKey) -> None:
        self._entries[key.thumbprint] = key
        self._entries.move_to_end(key.thumbprint)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


KEY_CACHE = KeyCache(KEY_CACHE_ENTRIES)


def load_jwk(obj: Any) -> AccountKey:
    """Parse a public JWK (RSA, EC, OKP/Ed25519); refuse private, weak or non-canonical keys."""
    canonical, raw = _canonical_members(obj)
    thumb = b64url_encode(
        hashlib.sha256(
            json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        ).digest()
    )
    cached = KEY_CACHE.get(thumb)
    if cached is not None:
        return cached
    return _build_key(canonical, raw, thumb)


def _member(obj: dict[str, Any], name: str) -> bytes:
    if name not in obj:
        raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"{obj['kty']} jwk has no {name!r} member")
    return b64u_decode(obj[name], f"jwk.{name}")


def _canonical_members(obj: Any) -> tuple[dict[str, str], dict[str, bytes]]:
    """The RFC 7638 required members (canonical spellings) and their decoded octets."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kty"), str):
        raise AcmeProblem(ProblemType.MALFORMED, "jwk must be a JSON object with a kty member")
    kty = obj["kty"]
    if PRIVATE_MEMBERS & set(obj):
        raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "jwk must not contain private key material")
    if kty == "OKP":
        if obj.get("crv") != "Ed25519":
            raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "only Ed25519 OKP keys are supported")
        x = _member(obj, "x")
        _check_ed25519_point(x)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(x)}, {"x": x}
    if kty == "EC":
        crv = obj.get("crv")
        if not isinstance(crv, str) or crv not in EC_CURVES:
            raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"unsupported EC curve {crv!r}")
        size = EC_CURVES[crv][1]
        x, y = _member(obj, "x"), _member(obj, "y")
        if len(x) != size or len(y) != size:
            raise AcmeProblem(
                ProblemType.BAD_PUBLIC_KEY, f"{crv} coordinates x and y must be {size} octets"
            )
        members = {"crv": crv, "kty": "EC", "x": b64url_encode(x), "y": b64url_encode(y)}
        return members, {"x": x, "y": y}
    if kty == "RSA":
        n, e = _member(obj, "n"), _member(obj, "e")
        if not n or not e or n[0] == 0 or e[0] == 0:
            raise AcmeProblem(
                ProblemType.BAD_PUBLIC_KEY,
                "RSA n and e must use the minimum number of octets (RFC 7518 §2, no leading zero)",
            )
        return {"e": b64url_encode(e), "kty": "RSA", "n": b64url_encode(n)}, {"n": n, "e": e}
    raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"unsupported key type {kty!r}")


def _check_ed25519_point(x: bytes) -> None:
    """32 octets encoding y < p, and no sign bit on the two points whose x is zero (RFC 8032)."""
    if len(x) != 32:
        raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "Ed25519 public key must be 32 bytes")
    y = int.from_bytes(x, "little") & ((1 << 255) - 1)
    sign = x[31] >> 7
    if y >= ED25519_P or (sign and y in (1, ED25519_P - 1)):
        raise AcmeProblem(
            ProblemType.BAD_PUBLIC_KEY, "Ed25519 public key is not a canonical point encoding"
        )


def _build_key(canonical: dict[str, str], raw: dict[str, bytes], thumb: str) -> AccountKey:
    kty = canonical["kty"]
    key: Any
    try:
        if kty == "OKP":
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw["x"])
            return AccountKey(canonical, thumb, key, "OKP", "Ed25519")
        if kty == "EC":
            crv = canonical["crv"]
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(raw["x"], "big"), int.from_bytes(raw["y"], "big"), EC_CURVES[crv][0]
            )
            return AccountKey(canonical, thumb, numbers.public_key(), "EC", crv)
        numbers_rsa = rsa.RSAPublicNumbers(
            int.from_bytes(raw["e"], "big"), int.from_bytes(raw["n"], "big")
        )
        bits = numbers_rsa.n.bit_length()
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise AcmeProblem(
                ProblemType.BAD_PUBLIC_KEY,
                f"RSA keys must be {RSA_MIN_BITS} to {RSA_MAX_BITS} bits, got {bits}",
            )
        return AccountKey(canonical, thumb, numbers_rsa.public_key(), "RSA", None)
    except ValueError:
        raise AcmeProblem(
            ProblemType.BAD_PUBLIC_KEY, f"jwk is not a valid {kty} public key"
        ) from None


def _verify_signature(key: AccountKey, alg: str, signing_input: bytes, sig: bytes) -> bool:
    kty, crv = SIGNATURE_ALGORITHMS[alg]
    if key.kty != kty or (crv is not None and key.crv != crv):
        raise AcmeProblem(
            ProblemType.BAD_SIGNATURE_ALGORITHM,
            f"algorithm {alg} does not match the {key.kty} {key.crv or ''} key".replace("  ", " "),
            extra={"algorithms": sorted(SIGNATURE_ALGORITHMS)},
        )
    if kty == "OKP":
        try:
            key.public_key.verify(sig, signing_input)
            return True
        except InvalidSignature:
            return False
    algorithm = josepy.JWASignature.from_json(alg)
    try:
        return bool(algorithm.verify(key.public_key, signing_input, sig))
    except (josepy.errors.Error, ValueError):
        return False


@dataclass(frozen=True)
class ParsedJWS:
    protected: dict[str, Any]
    protected_b64: str
    payload_b64: str
    payload: bytes
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode()

    def payload_json(self) -> dict[str, Any]:
        """The payload as a JSON object; POST-as-GET (empty payload) is refused here."""
        value = strict_json.loads(self.payload, "JWS payload")
        if not isinstance(value, dict):
            raise AcmeProblem(ProblemType.MALFORMED, "JWS payload must be a JSON object")
        return value

    @property
    def is_post_as_get(self) -> bool:
        return self.payload_b64 == ""


def parse_flattened(obj: Any, *, what: str = "request") -> ParsedJWS:
    """Strictly a flattened JSON serialization with a protected header and no other header."""
    if not isinstance(obj, dict):
        raise AcmeProblem(ProblemType.MALFORMED, f"{what} must be a flattened JWS JSON object")
    if "signatures" in obj:
        raise AcmeProblem(
            ProblemType.MALFORMED, f"{what}: only the flattened JWS serialization is accepted"
        )
    if "header" in obj:
        raise AcmeProblem(ProblemType.MALFORMED, f"{what}: unprotected JWS headers are not allowed")
    extra = set(obj) - {"protected", "payload", "signature"}
    if extra or not {"protected", "payload", "signature"} <= set(obj):
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"{what} must have exactly the members protected, payload, signature",
        )
    protected_b64 = obj["protected"]
    payload_b64 = obj["payload"]
    if not isinstance(payload_b64, str):
        raise AcmeProblem(ProblemType.MALFORMED, f"{what}: payload must be a string")
    protected = strict_json.loads(
        b64u_decode(protected_b64, f"{what}: protected header"), f"{what}: protected header"
    )
    if not isinstance(protected, dict):
        raise AcmeProblem(ProblemType.MALFORMED, f"{what}: protected header must be a JSON object")
    _check_critical(protected, what)
    return ParsedJWS(
        protected=protected,
        protected_b64=protected_b64,
        payload_b64=payload_b64,
        payload=b64u_decode(payload_b64, f"{what}: payload") if payload_b64 else b"",
        signature=b64u_decode(obj["signature"], f"{what}: signature"),
    )


def _check_critical(protected: dict[str, Any], what: str) -> None:
    """RFC 7515 §4.1.11: we understand no header extension, so any `crit` is refused; and
    RFC 7797 unencoded payloads (`b64: false`) would change what the signature covers."""
    if "b64" in protected and protected["b64"] is not True:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"{what}: unencoded payloads (b64 header, RFC 7797) are not supported",
        )
    if "crit" in protected:
        crit = protected["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(n, str) for n in crit):
            raise AcmeProblem(
                ProblemType.MALFORMED,
                f"{what}: crit header must be a non-empty list of extension names",
            )
        names = ", ".join(repr(n[:40]) for n in crit[:5])
        raise AcmeProblem(
            ProblemType.MALFORMED, f"{what}: critical header extension(s) {names} are not supported"
        )


def check_signature_alg(jws: ParsedJWS) -> str:
    alg = jws.protected.get("alg")
    if not isinstance(alg, str) or alg not in SIGNATURE_ALGORITHMS:
        shown = repr(alg)[:40] if isinstance(alg, str) else "missing or not a string"
        raise AcmeProblem(
            ProblemType.BAD_SIGNATURE_ALGORITHM,
            f"unsupported JWS algorithm {shown}; use one of {', '.join(sorted(SIGNATURE_ALGORITHMS))}",
            extra={"algorithms": sorted(SIGNATURE_ALGORITHMS)},
        )
    return str(alg)


def verify(jws: ParsedJWS, key: AccountKey) -> None:
    """Check the signature; a key that verified one is worth caching (see KeyCache)."""
    alg = check_signature_alg(jws)
    if not _verify_signature(key, alg, jws.signing_input, jws.signature):
        raise AcmeProblem(ProblemType.MALFORMED, "JWS signature is invalid")
    KEY_CACHE.put(key)


def verify_eab(eab: Any, *, outer_key: AccountKey, url: str) -> tuple[str, ParsedJWS]:
    """Check an externalAccountBinding's shape; return (kid, jws) for the MAC check."""
    jws = parse_flattened(eab, what="externalAccountBinding")
    header = jws.protected
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in MAC_ALGORITHMS:
        shown = repr(alg[:40]) if isinstance(alg, str) else "a missing or non-string alg"
        raise AcmeProblem(
            ProblemType.BAD_SIGNATURE_ALGORITHM,
            f"externalAccountBinding must use HS256, HS384 or HS512, not {shown}",
        )
    if "nonce" in header:
        raise AcmeProblem(ProblemType.MALFORMED, "externalAccountBinding must not carry a nonce")
    if header.get("url") != url:
        raise AcmeProblem(
            ProblemType.MALFORMED, "externalAccountBinding url must be the newAccount URL"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem(ProblemType.MALFORMED, "externalAccountBinding must name a kid")
    bound = strict_json.loads(jws.payload, "externalAccountBinding payload")
    if load_jwk(bound).thumbprint != outer_key.thumbprint:
        raise AcmeProblem(
            ProblemType.MALFORMED, "externalAccountBinding payload must be the account's public key"
        )
    return kid, jws


def eab_mac_valid(jws: ParsedJWS, hmac_key_b64: str | None) -> bool:
    """Constant-time MAC check; with no key (unknown kid) a throwaway key does the same work,
    so the answer and its timing do not tell whether the key ID exists."""
    key = _hmac_key_bytes(hmac_key_b64) if hmac_key_b64 is not None else None
    digest = MAC_ALGORITHMS[str(jws.protected["alg"])]
    expected = hmac.new(key or b"\0" * 32, jws.signing_input, digest).digest()
    return hmac.compare_digest(expected, jws.signature) and key is not None


def _hmac_key_bytes(hmac_key_b64: str) -> bytes | None:
    try:
        return b64url_decode(hmac_key_b64)
    except ValueError:
        return None  # a stored key we cannot read verifies nothing
