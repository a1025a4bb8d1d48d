"""Run `acme-gateway serve` as a real subprocess for tests, exactly as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
GATEWAY = str(VENV_BIN / "acme-gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_env(root_pem: Path | None = None) -> dict[str, str]:
    """Environment for client processes: our CA instead of the system bundle (see interop notes)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")}
    if root_pem is not None:
        env["REQUESTS_CA_BUNDLE"] = str(root_pem)
        env["SSL_CERT_FILE"] = str(root_pem)
    return env


class GatewayProcess:
    """One server process; several may share a data dir / database."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database: str | None = None,
        account_creation: str = "open",
        http01_port: int | None = None,
        dns_resolvers: tuple[str, ...] = (),
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database = database
        self.account_creation = account_creation
        self.http01_port = http01_port or free_port()
        self.dns_resolvers = dns_resolvers
        self.extra_args = extra_args
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/directory"

    @property
    def root_pem(self) -> Path:
        return self.data_dir / "root.pem"

    def store_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.database:
            args += ["--database", self.database]
        return args

    def command(self) -> list[str]:
        cmd = [GATEWAY, "serve", "--listen", f"127.0.0.1:{self.port}",
               "--base-url", self.base_url, *self.store_args(),
               "--account-creation", self.account_creation,
               "--http01-port", str(self.http01_port), *self.extra_args]
        for resolver in self.dns_resolvers:
            cmd += ["--dns-resolver", resolver]
        return cmd

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env=client_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"acme-gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready():
                if not self.root_pem.exists():
                    self.root_pem.write_text(self.cli("ca", "cert"))
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"acme-gateway did not become ready:\n{self.log_tail()}")

    def _ready(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(self.directory_url, context=context, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cli(self, *args: str, check: bool = True) -> str:
        """Run an admin command against this server's store (after the subcommand's args)."""
        cmd = [GATEWAY, *args, *self.store_args_for(args)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=client_env())
        if check and result.returncode != 0:
            raise RuntimeError(f"{cmd} failed ({result.returncode}): {result.stderr}")
        return result.stdout if check else result.stdout + result.stderr

    def store_args_for(self, args: tuple[str, ...]) -> list[str]:
        if args[:2] == ("ca", "cert"):
            return ["--data-dir", str(self.data_dir)]
        return self.store_args()

    def create_registration(self, name: str, *extra: str) -> dict[str, object]:
        return dict(json.loads(self.cli("registration", "create", name, *extra)))
