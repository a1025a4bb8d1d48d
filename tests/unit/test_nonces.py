"""The nonce service's protocol rules, without a database (an in-memory spent set)."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

import pytest

from acme_server.domain.problems import AcmeProblem
from acme_server.encoding import b64url_decode, b64url_encode
from acme_server.nonces import NonceService

KEY = b"k" * 32


class MemorySpent:
    def __init__(self) -> None:
        self.rows: dict[str, datetime] = {}

    async def spend(self, value: str, expires_at: datetime) -> bool:
        if value in self.rows:
            return False
        self.rows[value] = expires_at
        return True

    async def purge_expired(self) -> int:
        return 0


def _refused(service: NonceService, nonce: object) -> str:
    with pytest.raises(AcmeProblem) as caught:
        asyncio.run(service.consume(nonce))
    assert str(caught.value.type).endswith("badNonce")
    return caught.value.detail


def test_a_nonce_is_spent_once_under_its_canonical_spelling() -> None:
    spent = MemorySpent()
    service = NonceService(spent, KEY, 60)
    nonce = service.issue()
    asyncio.run(service.consume(nonce))
    assert list(spent.rows) == [nonce]
    assert "already been used" in _refused(service, nonce)


def test_another_spelling_of_a_nonce_is_refused_not_spent() -> None:
    spent = MemorySpent()
    service = NonceService(spent, KEY, 60)
    nonce = service.issue()
    raw = b64url_decode(nonce)
    # 40 bytes are 54 characters with 4 spare bits: set them and the bytes stay the same.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    trailing = nonce[:-1] + alphabet[alphabet.index(nonce[-1]) | 0b1111]
    assert base64.urlsafe_b64decode(trailing + "==") == raw
    for spelling in (trailing, nonce + "=", " " + nonce, nonce + "\n"):
        assert "canonical" in _refused(service, spelling)
    assert spent.rows == {}
    asyncio.run(service.consume(nonce))  # the real spelling is still unspent


def test_foreign_expired_and_missing_nonces_are_bad_nonces() -> None:
    service = NonceService(MemorySpent(), KEY, 60)
    other = NonceService(MemorySpent(), b"x" * 32, 60)
    assert "not issued by this server" in _refused(service, other.issue())
    assert "not issued by this server" in _refused(service, b64url_encode(b"short"))
    expired = NonceService(MemorySpent(), KEY, -5)
    assert "expired" in _refused(service, expired.issue())
    assert "no anti-replay nonce" in _refused(service, None)
    assert "no anti-replay nonce" in _refused(service, "")
    assert "no anti-replay nonce" in _refused(service, 42)


def test_issued_nonces_are_unique() -> None:
    service = NonceService(MemorySpent(), KEY, 60)
    assert len({service.issue() for _ in range(200)}) == 200
