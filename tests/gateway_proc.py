"""Run `acme-gateway serve` as a real subprocess for tests, exactly as a user would."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.procs import free_port, http_ok, log_tail, stop_process, wait_ready

VENV_BIN = Path(sys.executable).parent
GATEWAY = str(VENV_BIN / "acme-gateway")
CA_OPTIONS = ("--ca-cert", "--ca-key")  # serve's options that `ca cert` must see as well
# The tests' challenge responders listen on loopback, which validation refuses by default:
# every test server allows it explicitly, so the product's default stays strict.
LOOPBACK_ALLOWED = ("--validation-allow-cidr", "127.0.0.0/8", "--validation-allow-cidr", "::1/128")
# Test servers serve accounts from memory for at most this long (the product default is 2 s):
# short, so a registration change made by the admin CLI is waited out quickly (see `cli`),
# but not zero, so the tests run through the cache as production does.
TEST_ACCOUNT_CACHE_SECONDS = 0.5
# `registration` subcommands that change what a running server must enforce.
_REGISTRATION_READS = frozenset({"list", "show", "create"})


def client_env(root_pem: Path | None = None) -> dict[str, str]:
    """Environment for client processes: our CA instead of the system bundle (see interop notes)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
    }
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
        allow_loopback: bool = True,
        workers: int | None = None,
        account_cache_seconds: float = TEST_ACCOUNT_CACHE_SECONDS,
        metrics: bool = False,
        tlsalpn01_port: int | None = None,
        public_url: str | None = None,
        insecure_http: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.database = database
        self.account_creation = account_creation
        self.http01_port = http01_port or free_port()
        self.tlsalpn01_port = tlsalpn01_port or free_port()  # issue 13: tls-alpn-01
        self.dns_resolvers = dns_resolvers
        self.extra_args = extra_args
        self.allow_loopback = allow_loopback
        self.workers = workers  # None: the server's default (one per CPU)
        self.account_cache_seconds = account_cache_seconds
        self.port = port or free_port()
        self.metrics_port = free_port() if metrics else None  # --metrics-listen
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"
        # Behind a TLS-terminating load balancer: plain HTTP here, URLs built from its address.
        self.public_url = public_url
        self.insecure_http = insecure_http

    @property
    def base_url(self) -> str:
        return self.public_url or self.local_url

    @property
    def local_url(self) -> str:
        """This process's own listener (the load balancer's backend address)."""
        scheme = "http" if self.insecure_http else "https"
        return f"{scheme}://localhost:{self.port}"

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
        cmd = [
            GATEWAY,
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--base-url",
            self.base_url,
            *self.store_args(),
            "--account-creation",
            self.account_creation,
            "--http01-port",
            str(self.http01_port),
            "--tlsalpn01-port",
            str(self.tlsalpn01_port),
            *(LOOPBACK_ALLOWED if self.allow_loopback else ()),
            "--account-cache-seconds",
            str(self.account_cache_seconds),
            *(("--workers", str(self.workers)) if self.workers else ()),
            *(("--metrics-listen", f"127.0.0.1:{self.metrics_port}") if self.metrics_port else ()),
            *(("--insecure-http",) if self.insecure_http else ()),
            *self.extra_args,
        ]
        for resolver in self.dns_resolvers:
            cmd += ["--dns-resolver", resolver]
        return cmd

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # A session of its own: signals reach the supervisor and every worker at once,
            # so SIGKILL is a real crash of the whole server, not just of its supervisor.
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=client_env(),
                start_new_session=True,
            )
        insecure = ssl.create_default_context()  # readiness only: the root is fetched after
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        try:
            wait_ready(
                self.proc,
                "acme-gateway",
                http_ok(f"{self.local_url}/directory", insecure),
                self.log_tail,
                timeout,
                interval=0.2,
            )
        except RuntimeError:
            self.stop()
            raise
        if not self.root_pem.exists():
            self.root_pem.write_text(self.cli("ca", "cert"))
        return self

    def metrics_text(self) -> str:
        """The Prometheus text from the metrics listener (start with `metrics=True`)."""
        assert self.metrics_port, "start the server with metrics=True"
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, sig, group=True)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def cli(self, *args: str, check: bool = True, settle: bool = True) -> str:
        """Run an admin command against this server's store (after the subcommand's args).

        A registration change reaches the running server within its account cache bound
        (`--account-cache-seconds`): wait that out, so the next request sees the change."""
        cmd = [GATEWAY, *args, *self.store_args_for(args)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=client_env())
        if check and result.returncode != 0:
            raise RuntimeError(f"{cmd} failed ({result.returncode}): {result.stderr}")
        changes = args[:1] == ("registration",) and args[1:2] and args[1] not in _REGISTRATION_READS
        if settle and changes:
            time.sleep(self.account_cache_seconds + 0.1)
        return result.stdout if check else result.stdout + result.stderr

    def store_args_for(self, args: tuple[str, ...]) -> list[str]:
        if args[:2] == ("ca", "cert"):
            return ["--data-dir", str(self.data_dir), *self.ca_args()]
        return self.store_args()

    def ca_args(self) -> list[str]:
        """The `--ca-cert`/`--ca-key` options among extra_args (either `--opt value` or
        `--opt=value`): `ca cert` needs them to name the root of the CA this server uses."""
        out: list[str] = []
        args = list(self.extra_args)
        for i, arg in enumerate(args):
            name = arg.partition("=")[0]
            if name not in CA_OPTIONS:
                continue
            if "=" in arg:
                out.append(arg)
            elif i + 1 < len(args):
                out += [arg, args[i + 1]]
        return out

    def create_registration(self, name: str, *extra: str) -> dict[str, object]:
        return dict(json.loads(self.cli("registration", "create", name, *extra)))
