"""What the observability tests share: a server process with global log options, and a
parser for the Prometheus text format (prometheus_client's own, not a regex)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_proc import GatewayProcess


class LoggingGateway(GatewayProcess):
    """A server started as `acme-gateway --log-level L --log-format F serve ...`."""

    def __init__(
        self, data_dir: Path, *, log_level: str = "info", log_format: str = "json", **kw: object
    ) -> None:
        super().__init__(data_dir, **kw)  # type: ignore[arg-type]
        self.log_options = ["--log-level", log_level, "--log-format", log_format]

    def command(self) -> list[str]:
        cmd = super().command()
        return [cmd[0], *self.log_options, *cmd[1:]]

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]


Sample = tuple[str, dict[str, str], float]


def samples(text: str) -> list[Sample]:
    """Every sample of a scrape: (name, labels, value)."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(found: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    return sum(
        v for n, lbl, v in found if n == name and all(lbl.get(k) == x for k, x in labels.items())
    )
