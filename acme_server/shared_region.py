"""State shared by the worker processes of one `serve`: the nonce window and a change counter.

A small file-backed memory map, created by the first process (the supervisor, or the only
process) and opened by each worker. Updates happen under `flock`, which the kernel releases
when a holder dies, so a worker killed mid-update never wedges the others.

* Nonce window: nonces carry a counter from one sequence shared by all workers, and a bit
  per counter in a ring of `WINDOW` bits records whether it was spent. A nonce is spendable
  once, by any worker, while it is among the newest `WINDOW` issued; older ones are refused
  (the client retries with a fresh one, as RFC 8555 §6.5 has it). No store write per request,
  bounded memory, and nothing survives a restart: the region's random epoch is in every
  nonce, so a nonce from an earlier run is never accepted by a later one.
* Account generation: bumped whenever a worker changes an account, so every worker drops
  its account cache at once instead of waiting for the cache's time bound.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import struct
import tempfile
from pathlib import Path

WINDOW = 1 << 23  # nonces; 1 MiB of bits
_EPOCH, _COUNTER, _GENERATION, _BITS = 0, 8, 16, 24
_SIZE = _BITS + WINDOW // 8
_U64 = struct.Struct("<Q")


def _default_dir() -> str | None:
    shm = Path("/dev/shm")  # noqa: S108 - mkstemp: a new 0600 file of a random name
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class SharedRegion:
    """One mapping of the region; each process opens its own (`create`, then `attach`)."""

    def __init__(self, path: Path, fd: int, mapping: mmap.mmap) -> None:
        self.path = path
        self._fd = fd
        self._map = mapping
        self.epoch = bytes(mapping[_EPOCH : _EPOCH + 8])

    @classmethod
    def create(cls, directory: str | None = None) -> SharedRegion:
        """A fresh region (new epoch) in a private file; the caller unlinks it with `remove`."""
        fd, name = tempfile.mkstemp(
            prefix="acme-gateway-", suffix=".shm", dir=directory or _default_dir()
        )
        os.ftruncate(fd, _SIZE)
        os.pwrite(fd, secrets.token_bytes(8), _EPOCH)
        return cls(Path(name), fd, mmap.mmap(fd, _SIZE))

    @classmethod
    def attach(cls, path: Path) -> SharedRegion:
        fd = os.open(path, os.O_RDWR)
        return cls(path, fd, mmap.mmap(fd, _SIZE))

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    # The nonce operations run on every request: plain flock/unlock calls, no context manager.

    def next_nonce(self) -> int:
        """Reserve the next counter and mark it unspent (its ring slot is reused)."""
        m = self._map
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            counter = _U64.unpack_from(m, _COUNTER)[0] + 1
            _U64.pack_into(m, _COUNTER, counter)
            slot, bit = divmod(counter % WINDOW, 8)
            m[_BITS + slot] &= ~(1 << bit) & 0xFF
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return counter

    def spend_nonce(self, counter: int) -> bool:
        """True exactly once per issued counter still inside the window."""
        m = self._map
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            latest = _U64.unpack_from(m, _COUNTER)[0]
            if counter > latest or counter <= latest - WINDOW or counter <= 0:
                return False
            slot, bit = divmod(counter % WINDOW, 8)
            current = m[_BITS + slot]
            if current & (1 << bit):
                return False
            m[_BITS + slot] = current | (1 << bit)
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    # -- account changes

    @property
    def account_generation(self) -> int:
        return int(_U64.unpack_from(self._map, _GENERATION)[0])

    def bump_account_generation(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _U64.pack_into(self._map, _GENERATION, _U64.unpack_from(self._map, _GENERATION)[0] + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
