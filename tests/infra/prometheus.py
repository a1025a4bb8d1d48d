"""A real Prometheus (Debian's `prometheus` package) for the tests, and its `promtool`.

`PrometheusServer(targets, rule_files).start(tmp)` writes a scrape config with a short
interval (loopback targets only), keeps its TSDB in the test's directory, waits for
`/-/ready`, and answers instant queries over the HTTP API (`query`); `stop()` tears it down.
A missing binary fails loudly with the install hint (never a skip).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.infra.bind import die_with_parent
from tests.procs import free_port, http_ok, log_tail, stop_process, wait_ready

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
INSTALL_HINT = "run `bash tools/install-system-deps.sh` (as root) to install Debian's prometheus"
SCRAPE_SECONDS = 1
HTTP_TIMEOUT = 10.0


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or a query failed."""


def require(binary: str) -> str:
    if not os.access(binary, os.X_OK):
        raise PrometheusError(f"{binary} is missing: {INSTALL_HINT}")
    return binary


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on the return code (output included)."""
    return subprocess.run(
        [require(PROMTOOL), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


class PrometheusServer:
    """One Prometheus scraping `targets` (job name -> ["127.0.0.1:PORT", ...]) every second
    and evaluating `rule_files` every second."""

    def __init__(
        self, targets: Mapping[str, Sequence[str]], rule_files: Sequence[Path] = ()
    ) -> None:
        for addresses in targets.values():
            for address in addresses:
                if not address.startswith(("127.0.0.1:", "[::1]:", "localhost:")):
                    raise ValueError(f"tests scrape loopback only, not {address}")
        self.targets = {job: list(addrs) for job, addrs in targets.items()}
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addrs}]}
                for job, addrs in self.targets.items()
            ],
        }

    def start(self, directory: Path, timeout: float = 60) -> PrometheusServer:
        binary = require(PROMETHEUS)
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        check = promtool("check", "config", str(config))
        if check.returncode != 0:
            raise PrometheusError(f"promtool check config:\n{check.stdout}{check.stderr}")
        self.log_path = directory / "prometheus.log"
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--query.lookback-delta=30s",
            "--log.level=warn",
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        try:
            wait_ready(self.proc, "prometheus", http_ok(f"{self.url}/-/ready"), self.logs, timeout)
        except RuntimeError as exc:
            self.stop()
            raise PrometheusError(str(exc)) from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def logs(self, lines: int = 80) -> str:
        return log_tail(self.log_path, lines)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer, else PrometheusError."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read() or b"{}")
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (vector samples; a scalar becomes one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets_health(self) -> dict[str, str]:
        """scrape URL -> "up" / "down" / "unknown" for every active target."""
        data = self.api("targets", state="active")
        return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}
