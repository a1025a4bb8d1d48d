"""JOSE for ACME: flattened JWS parsing and verification, account keys, EAB MACs.

josepy does the RSA/ECDSA keys and signatures; it has no EdDSA, so Ed25519 (RFC 8037 OKP
keys) is verified here with `cryptography` directly. Everything raises AcmeProblem with the
RFC 8555 error type a client should see.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, cast

import josepy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acme_server.problems import AcmeProblem

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
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192


def b64u_decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise AcmeProblem("malformed", f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AcmeProblem("malformed", f"{what} is not valid base64url") from None


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class AccountKey:
    """A client public key with its RFC 7638 thumbprint and canonical JWK."""

    jwk: dict[str, Any]
    thumbprint: str
    public_key: Any  # cryptography public key
    kty: str
    crv: str | None

    def spki_der(self) -> bytes:
        return bytes(
            self.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def spki_sha256(self) -> str:
        return hashlib.sha256(self.spki_der()).hexdigest()


def load_jwk(obj: Any) -> AccountKey:
    """Parse a public JWK (RSA, EC, OKP/Ed25519); refuse private or weak keys.

    Account keys come back on every request: parsed keys are cached by their JSON text.
    """
    if isinstance(obj, dict):
        try:
            text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            raise AcmeProblem("malformed", "jwk is not a JSON object") from None
        return _load_jwk_text(text)
    return _parse_jwk(obj)


@functools.lru_cache(maxsize=4096)
def _load_jwk_text(text: str) -> AccountKey:
    return _parse_jwk(json.loads(text))


def _parse_jwk(obj: Any) -> AccountKey:
    if not isinstance(obj, dict) or not isinstance(obj.get("kty"), str):
        raise AcmeProblem("malformed", "jwk must be a JSON object with a kty member")
    kty = obj["kty"]
    if "d" in obj:
        raise AcmeProblem("badPublicKey", "jwk must not contain private key material")
    if kty == "OKP":
        if obj.get("crv") != "Ed25519":
            raise AcmeProblem("badPublicKey", "only Ed25519 OKP keys are supported")
        raw = b64u_decode(obj.get("x"), "jwk.x")
        if len(raw) != 32:
            raise AcmeProblem("badPublicKey", "Ed25519 public key must be 32 bytes")
        key: Any = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        canonical = {"crv": "Ed25519", "kty": "OKP", "x": obj["x"]}
        digest = hashlib.sha256(
            json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode()
        ).digest()
        return AccountKey(canonical, b64u_encode(digest), key, "OKP", "Ed25519")
    if kty not in ("RSA", "EC"):
        raise AcmeProblem("badPublicKey", f"unsupported key type {kty!r}")
    try:
        parsed = cast(josepy.JWK, josepy.JWK.from_json(obj))
    except (josepy.errors.DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise AcmeProblem("badPublicKey", f"invalid {kty} JWK: {exc}") from None
    key = parsed.key._wrapped if hasattr(parsed.key, "_wrapped") else parsed.key
    crv: str | None = None
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise AcmeProblem(
                "badPublicKey",
                f"RSA keys must be {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, got {key.key_size}",
            )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
        if crv is None:
            raise AcmeProblem("badPublicKey", f"unsupported curve {key.curve.name}")
    else:
        raise AcmeProblem("badPublicKey", "jwk must be a public key")
    canonical = parsed.public_key().to_partial_json()
    thumb = b64u_encode(parsed.thumbprint())
    return AccountKey(canonical, thumb, key, kty, crv)


def _verify_signature(key: AccountKey, alg: str, signing_input: bytes, sig: bytes) -> bool:
    kty, crv = SIGNATURE_ALGORITHMS[alg]
    if key.kty != kty or (crv is not None and key.crv != crv):
        raise AcmeProblem(
            "badSignatureAlgorithm",
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
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            raise AcmeProblem("malformed", "JWS payload is not valid JSON") from None
        if not isinstance(value, dict):
            raise AcmeProblem("malformed", "JWS payload must be a JSON object")
        return value

    @property
    def is_post_as_get(self) -> bool:
        return self.payload_b64 == ""


def parse_flattened(obj: Any, *, what: str = "request") -> ParsedJWS:
    """Strictly a flattened JSON serialization with a protected header and no other header."""
    if not isinstance(obj, dict):
        raise AcmeProblem("malformed", f"{what} must be a flattened JWS JSON object")
    if "signatures" in obj:
        raise AcmeProblem("malformed", f"{what}: only the flattened JWS serialization is accepted")
    if "header" in obj:
        raise AcmeProblem("malformed", f"{what}: unprotected JWS headers are not allowed")
    extra = set(obj) - {"protected", "payload", "signature"}
    if extra or not {"protected", "payload", "signature"} <= set(obj):
        raise AcmeProblem(
            "malformed", f"{what} must have exactly the members protected, payload, signature"
        )
    protected_b64 = obj["protected"]
    payload_b64 = obj["payload"]
    if not isinstance(payload_b64, str):
        raise AcmeProblem("malformed", f"{what}: payload must be a string")
    try:
        protected = json.loads(b64u_decode(protected_b64, "protected header"))
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", f"{what}: protected header is not JSON") from None
    if not isinstance(protected, dict):
        raise AcmeProblem("malformed", f"{what}: protected header must be a JSON object")
    return ParsedJWS(
        protected=protected,
        protected_b64=protected_b64,
        payload_b64=payload_b64,
        payload=b64u_decode(payload_b64, "payload") if payload_b64 else b"",
        signature=b64u_decode(obj["signature"], "signature"),
    )


def check_signature_alg(jws: ParsedJWS) -> str:
    alg = jws.protected.get("alg")
    if alg not in SIGNATURE_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"unsupported JWS algorithm {alg!r}; use one of {', '.join(sorted(SIGNATURE_ALGORITHMS))}",
            extra={"algorithms": sorted(SIGNATURE_ALGORITHMS)},
        )
    return str(alg)


def verify(jws: ParsedJWS, key: AccountKey) -> None:
    alg = check_signature_alg(jws)
    if not _verify_signature(key, alg, jws.signing_input, jws.signature):
        raise AcmeProblem("malformed", "JWS signature is invalid")


def verify_eab(eab: Any, *, outer_key: AccountKey, url: str) -> tuple[str, ParsedJWS]:
    """Check an externalAccountBinding's shape; return (kid, jws) for the MAC check."""
    jws = parse_flattened(eab, what="externalAccountBinding")
    header = jws.protected
    alg = header.get("alg")
    if alg not in MAC_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"externalAccountBinding must use HS256, HS384 or HS512, not {alg!r}",
        )
    if "nonce" in header:
        raise AcmeProblem("malformed", "externalAccountBinding must not carry a nonce")
    if header.get("url") != url:
        raise AcmeProblem("malformed", "externalAccountBinding url must be the newAccount URL")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem("malformed", "externalAccountBinding must name a kid")
    try:
        bound = json.loads(jws.payload)
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "externalAccountBinding payload is not a JWK") from None
    if load_jwk(bound).thumbprint != outer_key.thumbprint:
        raise AcmeProblem(
            "malformed", "externalAccountBinding payload must be the account's public key"
        )
    return kid, jws


def eab_mac_valid(jws: ParsedJWS, hmac_key_b64: str) -> bool:
    key = b64u_decode(hmac_key_b64, "HMAC key")
    digest = MAC_ALGORITHMS[str(jws.protected["alg"])]
    expected = hmac.new(key, jws.signing_input, digest).digest()
    return hmac.compare_digest(expected, jws.signature)
