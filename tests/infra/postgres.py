"""A real PostgreSQL for the tests: Debian's server binaries, run directly (no system service).

The cluster is initialised fresh in a private directory, listens on 127.0.0.1 on a free
port with password (SCRAM) auth, and is tuned for speed over durability (fsync off).
PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user
(created when missing); its data directory then lives in a private temporary directory
that user can reach, since pytest's own temp tree is closed to other users.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.infra.bind import die_with_parent
from tests.procs import free_port, log_tail, stop_process

PG_VERSION = "15"
PG_BINDIR = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
SERVICE_USER = "postgres"
INSTALL_HINT = "run `bash tools/install-system-deps.sh` (as root) to install Debian's postgresql-15"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TMP_PREFIX = "acme-gateway-pg-"


class PostgresError(RuntimeError):
    """The cluster could not be created or started, or a command failed."""


def missing_binaries() -> list[str]:
    """Paths of the PostgreSQL programs the fixture needs that are not installed."""
    return [
        str(PG_BINDIR / name)
        for name in ("initdb", "postgres", "psql")
        if not os.access(PG_BINDIR / name, os.X_OK)
    ]


def _ensure_service_user() -> pwd.struct_passwd:
    """The unprivileged user postgres runs as when we are root (Debian's package makes it)."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _sweep_abandoned_clusters(min_age: float = 600.0) -> None:
    """Remove clusters of killed test runs: no running postmaster and not just created."""
    for path in Path(tempfile.gettempdir()).glob(_TMP_PREFIX + "*"):
        try:
            if (path / "data" / "postmaster.pid").exists():
                continue
            if time.time() - path.stat().st_mtime < min_age:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


class PostgresServer:
    """One `postgres` process with a throwaway cluster; `.url` names its main database."""

    def __init__(self, *, user: str = "acme", database: str = "acme") -> None:
        self.host = "127.0.0.1"
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.database = database
        self.port = 0
        self.workdir: Path | None = None
        self.cluster_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.log_file: Path | None = None
        self._private_tmp: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """`postgresql://user:pw@127.0.0.1:PORT/db`, as `--database` takes it."""
        return self.url_for(self.database)

    def start(self, workdir: Path) -> PostgresServer:
        missing = missing_binaries()
        if missing:
            raise PostgresError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.workdir / "postgres.log"
        if os.geteuid() == 0:
            self._run_as = _ensure_service_user()
            _sweep_abandoned_clusters()
            self._private_tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
            base = self._private_tmp
            os.chown(base, self._run_as.pw_uid, self._run_as.pw_gid)
            # Where to look when debugging: workdir/cluster points at the real directory.
            link = self.workdir / "cluster"
            link.unlink(missing_ok=True)
            link.symlink_to(base)
        else:
            base = self.workdir / "cluster"
            if base.exists():
                shutil.rmtree(base)
            base.mkdir()
        base.chmod(0o700)
        self.cluster_dir = base / "data"
        self.socket_dir = base / "socket"
        self.socket_dir.mkdir()
        if self._run_as is not None:
            os.chown(self.socket_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self._initdb(base)
        last_error = ""
        for _ in range(5):  # the chosen port can be taken between probing and binding
            self.port = free_port(self.host)
            self._launch()
            try:
                self._wait_ready()
            except PostgresError as exc:
                last_error = str(exc)
                self._terminate()
                continue
            if self.database != "postgres":
                self.create_database(self.database)
            return self
        self._cleanup()
        raise PostgresError(f"postgres did not start: {last_error}")

    def stop(self) -> None:
        self._terminate()
        self._cleanup()

    def stop_server(self) -> None:
        """Stop the postgres process ("fast" shutdown: clients are disconnected) but keep the
        cluster, so `start_server` brings the same data back on the same port."""
        self._terminate()

    def start_server(self, timeout: float = 30.0) -> None:
        """Start the cluster again after `stop_server`, on the same port; wait until ready."""
        if self._proc is not None and self._proc.poll() is None:
            raise PostgresError("postgres is already running")
        self._launch()
        self._wait_ready(timeout)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines, missing="")

    def _popen_user_kwargs(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],
            "env": {
                "PATH": "/usr/bin:/bin",
                "HOME": str(self.cluster_dir.parent if self.cluster_dir else "/"),
                "LC_ALL": "C.UTF-8",
                "LANG": "C.UTF-8",
            },
            "umask": 0o077,
        }

    def _initdb(self, base: Path) -> None:
        assert self.cluster_dir is not None
        pwfile = base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._run_as is not None:
            os.chown(pwfile, self._run_as.pw_uid, self._run_as.pw_gid)
        result = subprocess.run(
            [
                str(PG_BINDIR / "initdb"),
                "-D",
                str(self.cluster_dir),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            check=False,
            cwd=base,
            **self._popen_user_kwargs(),
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed ({result.returncode}):\n"
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )

    def _launch(self) -> None:
        assert self.cluster_dir is not None and self.log_file is not None
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_buffers": "64MB",
            "max_wal_size": "1GB",
            "log_min_messages": "warning",
            "log_connections": "off",
            "dynamic_shared_memory_type": "mmap",
        }
        args = [str(PG_BINDIR / "postgres"), "-D", str(self.cluster_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cluster_dir,
                preexec_fn=die_with_parent(signal.SIGINT),
                **self._popen_user_kwargs(),
            )

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise PostgresError(f"postgres exited early; log:\n{self.log_tail()}")
            result = self._psql("SELECT 1", database="postgres", check=False)
            if result.returncode == 0:
                return
            last = result.stderr.decode(errors="replace").strip()
            time.sleep(0.1)
        raise PostgresError(f"postgres not ready in {timeout}s ({last}); log:\n{self.log_tail()}")

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, signal.SIGINT)  # "fast" shutdown, disconnects clients

    def _cleanup(self) -> None:
        if self._private_tmp is not None:
            shutil.rmtree(self._private_tmp, ignore_errors=True)
            self._private_tmp = None
            if self.workdir is not None:
                (self.workdir / "cluster").unlink(missing_ok=True)

    # -- databases -----------------------------------------------------------------------

    def _psql(
        self, sql: str, *, database: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run SQL over TCP with the password, as any client would."""
        env = dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="5")
        result = subprocess.run(
            [
                str(PG_BINDIR / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database or self.database,
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise PostgresError(
                f"psql failed ({result.returncode}) on {sql!r}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh random name by default) and return its URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self._psql(f"CREATE DATABASE {name}", database="postgres")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", database="postgres")
