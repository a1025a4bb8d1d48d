"""A start-up that fails half way stops what it had started: the store is closed again.

In-process on a real SQLite store: the server opens (and migrates) the store, then the CA
configuration or the listening socket is refused. Nothing of the store may stay open.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from acme_server.ca import CAConfigError, CertificateAuthority
from acme_server.config import Settings
from acme_server.server import run_server
from acme_server.store.database import default_database_url
from tests.procs import free_port


def _open_files_under(prefix: Path) -> list[str]:
    """Paths under `prefix` this process holds open (SQLite's file, -wal and -shm)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(prefix)):
            found.append(target)
    return found


def _settings(data_dir: Path, port: int, **overrides: object) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        database_url=default_database_url(data_dir),
        listen_port=port,
        insecure_http=True,
        **overrides,  # type: ignore[arg-type]
    )


def _other_ca_files(tmp_path: Path) -> tuple[Path, Path]:
    """A real CA certificate and a key that is not its key (a bad --ca-key)."""
    CertificateAuthority.load_or_create(tmp_path / "other")
    ca_dir = tmp_path / "other" / "ca"
    return ca_dir / "root.crt", ca_dir / "intermediate.key"


def test_bad_ca_key_after_the_store_opened_closes_the_store(tmp_path: Path) -> None:
    ca_cert, wrong_key = _other_ca_files(tmp_path)
    settings = _settings(tmp_path / "data", free_port(), ca_cert=ca_cert, ca_key=wrong_key)
    store = tmp_path / "data" / "acme-gateway.sqlite3"
    with pytest.raises(CAConfigError, match="does not match"):
        asyncio.run(run_server(settings))
    assert store.exists()  # the store was opened (and migrated) before the CA was refused
    assert _open_files_under(store) == []


def test_busy_port_after_the_store_opened_closes_the_store(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = _settings(tmp_path / "data", busy.getsockname()[1])
        store = tmp_path / "data" / "acme-gateway.sqlite3"
        with pytest.raises(OSError):
            asyncio.run(run_server(settings))
    assert store.exists()
    assert _open_files_under(store) == []
