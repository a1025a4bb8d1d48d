"""The nonce service's protocol rules, and the shared-memory nonce window of `--workers`."""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from acme_server.domain.problems import AcmeProblem
from acme_server.encoding import b64url_decode, b64url_encode
from acme_server.nonces import TOKEN_BYTES, NonceService, WindowLedger
from acme_server.shared_region import WINDOW, SharedRegion

KEY = b"k" * 32


class MemorySpent:
    """A ledger for the protocol rules alone: random tokens, spent in a dict."""

    def __init__(self) -> None:
        self.rows: dict[bytes, datetime] = {}

    def new_token(self) -> bytes:
        return secrets.token_bytes(TOKEN_BYTES)

    async def spend(self, token: bytes, expires_at: datetime) -> bool:
        if token in self.rows:
            return False
        self.rows[token] = expires_at
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
    assert list(spent.rows) == [b64url_decode(nonce)[8:24]]
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


@pytest.fixture
def region() -> Iterator[SharedRegion]:
    shared = SharedRegion.create()
    yield shared
    shared.close()
    shared.remove()


def test_window_nonces_are_spent_once_on_any_worker(region: SharedRegion) -> None:
    here = NonceService(WindowLedger(region), KEY, 60)
    other_region = SharedRegion.attach(region.path)  # another worker's own mapping
    there = NonceService(WindowLedger(other_region), KEY, 60)
    try:
        nonce = here.issue()
        asyncio.run(there.consume(nonce))  # issued by one worker, good on another
        assert "already been used" in _refused(here, nonce)
        assert "already been used" in _refused(there, nonce)
        assert len({here.issue() for _ in range(100)} | {there.issue() for _ in range(100)}) == 200
    finally:
        other_region.close()


def test_window_refuses_nonces_of_an_earlier_run(region: SharedRegion) -> None:
    earlier = SharedRegion.create()
    try:
        stale = NonceService(WindowLedger(earlier), KEY, 60).issue()
    finally:
        earlier.close()
        earlier.remove()
    # Same key, same counter value, but another epoch: a restarted server refuses it.
    assert "already been used, or is too old" in _refused(
        NonceService(WindowLedger(region), KEY, 60), stale
    )


def test_window_forgets_the_oldest_nonces_first(region: SharedRegion) -> None:
    first = region.next_nonce()
    kept = region.next_nonce()
    # Jump the shared counter so `first` falls just out of the window and `kept` just in.
    with open(region.path, "r+b") as raw:
        raw.seek(8)
        raw.write((first + WINDOW).to_bytes(8, "little"))
    assert not region.spend_nonce(first)
    assert region.spend_nonce(kept)
    assert not region.spend_nonce(kept)
    assert not region.spend_nonce(first + WINDOW + 1)  # never issued


def _spend_all(path: str, counters: list[int], out: multiprocessing.Queue[int]) -> None:
    shared = SharedRegion.attach(Path(path))
    out.put(sum(shared.spend_nonce(c) for c in counters))
    shared.close()


def test_racing_processes_spend_each_nonce_exactly_once(region: SharedRegion) -> None:
    counters = [region.next_nonce() for _ in range(2000)]
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[int] = context.Queue()
    procs = [
        context.Process(target=_spend_all, args=(str(region.path), counters, out)) for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    wins = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sum(wins) == len(counters)


def test_account_generation_is_shared(region: SharedRegion) -> None:
    other = SharedRegion.attach(region.path)
    try:
        before = other.account_generation
        region.bump_account_generation()
        assert other.account_generation == before + 1
    finally:
        other.close()
