"""A real BIND9 `named` for the tests: authoritative for test zones, updatable with TSIG.

Every name in a test zone resolves to 127.0.0.1 (wildcard A), so the ACME server's http-01
validator, pointed at this server, reaches the test's local HTTP listener; dns-01 TXT
records are added with Debian's `nsupdate` (as certbot's manual hooks and cert-manager's
RFC 2136 solver do) and checked with dnspython.
"""

from __future__ import annotations

import base64
import ctypes
import os
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsigkeyring
import dns.update

from tests.procs import free_port, log_tail, stop_process

NAMED = "/usr/sbin/named"
NSUPDATE = "/usr/bin/nsupdate"
DIG = "/usr/bin/dig"
TTL = 1  # seconds: records and negative answers must not linger between test steps

INSTALL_HINT = "run `bash tools/install-system-deps.sh` (as root) to install Debian's bind9"


class BindError(RuntimeError):
    """named could not be started or an update failed."""


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn so a killed test run leaves no server behind (Linux PR_SET_PDEATHSIG).

    The signal fires when the *thread* that forked exits, so only from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def set_pdeathsig() -> None:
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def missing_binaries() -> list[str]:
    """Paths of the BIND tools the fixture needs that are not installed."""
    return [p for p in (NAMED, NSUPDATE, DIG) if not os.access(p, os.X_OK)]


def free_udp_tcp_port(address: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on `address` (DNS listens on both)."""
    return free_port(address, udp=True)


def _zone_file(zone: str, address: str) -> str:
    origin = zone.rstrip(".") + "."
    return (
        f"$ORIGIN {origin}\n"
        f"$TTL {TTL}\n"
        f"@ IN SOA ns.{origin} hostmaster.{origin} 1 60 60 600 {TTL}\n"
        f"@ IN NS ns.{origin}\n"
        f"@ IN A {address}\n"
        f"ns IN A {address}\n"
        f"* IN A {address}\n"
    )


class BindServer:
    """One `named` process in the foreground, configured entirely inside `workdir`."""

    def __init__(
        self,
        zones: Sequence[str] = ("acme.test",),
        *,
        address: str = "127.0.0.1",
        answer_address: str = "127.0.0.1",
        key_name: str = "acme-test-key",
        broken_zones: Sequence[str] = (),
    ) -> None:
        if not zones:
            raise ValueError("at least one zone is needed")
        self.zones = [z.rstrip(".").lower() for z in zones]
        self.zone = self.zones[0]
        # Zones whose file does not load: named answers SERVFAIL for every name in them.
        self.broken_zones = [z.rstrip(".").lower() for z in broken_zones]
        self.address = address
        self.answer_address = answer_address
        self.key_name = key_name
        self.key_algorithm = "hmac-sha256"
        self.key_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.port = 0
        self.workdir: Path | None = None
        self.key_file: Path | None = None
        self.log_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def resolver_address(self) -> str:
        """`HOST:PORT`, as the ACME server's `--dns-resolver` flag takes it."""
        return f"{self.address}:{self.port}"

    def start(self, workdir: Path) -> BindServer:
        missing = missing_binaries()
        if missing:
            raise BindError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key_file = self.workdir / "tsig.key"
        self.key_file.write_text(self._key_clause())
        self.key_file.chmod(0o600)
        for zone in self.zones:
            (self.workdir / f"{zone}.zone").write_text(_zone_file(zone, self.answer_address))
            # A journal left by an earlier run would not match the fresh zone file.
            (self.workdir / f"{zone}.zone.jnl").unlink(missing_ok=True)
        for zone in self.broken_zones:
            (self.workdir / f"{zone}.zone").write_text("$ORIGIN .\n@ IN BOGUS broken\n")
        self.log_file = self.workdir / "named.log"
        last_error = ""
        for _ in range(5):  # the chosen port can be taken between probing and binding
            self.port = free_udp_tcp_port(self.address)
            conf = self.workdir / "named.conf"
            conf.write_text(self._config())
            log = self.log_file.open("ab")
            # -g: foreground, log to stderr; no -u: we stay the invoking user (root here),
            # which owns workdir, so zone journals (*.jnl) can be written next to the zones.
            self._proc = subprocess.Popen(
                [NAMED, "-g", "-4", "-n", "1", "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
            log.close()
            try:
                self._wait_ready()
                return self
            except BindError as exc:
                last_error = str(exc)
                self.stop()
        raise BindError(f"named did not start: {last_error}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout=10)

    def __enter__(self) -> BindServer:
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

    def _key_clause(self) -> str:
        return (
            f'key "{self.key_name}" {{\n'
            f"    algorithm {self.key_algorithm};\n"
            f'    secret "{self.key_secret}";\n'
            "};\n"
        )

    def _config(self) -> str:
        assert self.workdir is not None
        wd = self.workdir
        zones = "".join(
            f'zone "{zone}" {{\n'
            "    type primary;\n"
            f'    file "{wd / (zone + ".zone")}";\n'
            f'    journal "{wd / (zone + ".zone.jnl")}";\n'
            f'    update-policy {{ grant "{self.key_name}" zonesub ANY; }};\n'
            "};\n"
            for zone in self.zones
        )
        zones += "".join(
            f'zone "{zone}" {{ type primary; file "{wd / (zone + ".zone")}"; }};\n'
            for zone in self.broken_zones
        )
        return (
            f'include "{self.key_file}";\n'
            "controls { };\n"  # no rndc channel: the tests stop named with SIGTERM
            "options {\n"
            f'    directory "{wd}";\n'
            f'    pid-file "{wd / "named.pid"}";\n'
            f'    session-keyfile "{wd / "session.key"}";\n'
            f'    managed-keys-directory "{wd}";\n'
            f'    dump-file "{wd / "named.dump"}";\n'
            f'    statistics-file "{wd / "named.stats"}";\n'
            f"    listen-on port {self.port} {{ {self.address}; }};\n"
            "    listen-on-v6 { none; };\n"
            "    recursion no;\n"
            "    dnssec-validation no;\n"
            "    notify no;\n"
            "    allow-transfer { none; };\n"
            f"    max-cache-ttl {TTL};\n"
            f"    max-ncache-ttl {TTL};\n"
            "};\n" + zones
        )

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        query = dns.message.make_query(self.zone + ".", dns.rdatatype.SOA)
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise BindError(f"named exited early; log:\n{self.log_tail()}")
            try:
                udp = dns.query.udp(query, self.address, port=self.port, timeout=0.5)
                tcp = dns.query.tcp(query, self.address, port=self.port, timeout=0.5)
            except (OSError, dns.exception.DNSException):
                time.sleep(0.1)
                continue
            if udp.rcode() == dns.rcode.NOERROR and tcp.rcode() == dns.rcode.NOERROR:
                return
            time.sleep(0.1)
        raise BindError(f"named not answering within {timeout}s; log:\n{self.log_tail()}")

    # -- updates (RFC 2136, with Debian's nsupdate as clients do) -----------------------

    def zone_of(self, name: str) -> str:
        """The longest served zone containing `name`."""
        name = name.rstrip(".").lower()
        matches = [z for z in self.zones if name == z or name.endswith("." + z)]
        if not matches:
            raise BindError(f"{name} is in none of the zones {self.zones}")
        return max(matches, key=len)

    def nsupdate(self, commands: Sequence[str], zone: str) -> None:
        """Send one signed update (`update ...` lines) to this server with nsupdate."""
        assert self.key_file is not None, "server not started"
        script = "\n".join(
            [f"server {self.address} {self.port}", f"zone {zone}", *commands, "send", ""]
        )
        result = subprocess.run(
            [NSUPDATE, "-k", str(self.key_file), "-t", "10"],
            input=script.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise BindError(
                f"nsupdate failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}\nscript:\n{script}"
            )

    def nsupdate_add_txt(self, name: str, value: str) -> None:
        """Add a TXT record; also pins the owner's parent to A 127.0.0.1 (see below)."""
        name = name.rstrip(".").lower()
        zone = self.zone_of(name)
        commands = [f"update add {name}. {TTL} TXT {_txt_quote(value)}"]
        parent = name.split(".", 1)[1] if "." in name else ""
        if parent and (parent == zone or parent.endswith("." + zone)):
            # A TXT at _acme-challenge.X makes X an existing (empty non-terminal) name, which
            # the `*` wildcard no longer covers (RFC 4592): keep X resolving for http-01.
            commands.append(f"update add {parent}. {TTL} A {self.answer_address}")
        self.nsupdate(commands, zone)

    def nsupdate_delete_txt(self, name: str) -> None:
        """Delete every TXT record at `name`."""
        name = name.rstrip(".").lower()
        self.nsupdate([f"update delete {name}. TXT"], self.zone_of(name))

    def unsigned_update_rcode(self, name: str, value: str) -> int:
        """Send an update without TSIG (dnspython) and return the server's rcode."""
        name = name.rstrip(".").lower()
        update = dns.update.UpdateMessage(self.zone_of(name) + ".")
        update.add(name + ".", TTL, "TXT", _txt_quote(value))
        response = dns.query.tcp(update, self.address, port=self.port, timeout=5)
        return int(response.rcode())

    # -- queries -------------------------------------------------------------------------

    def query(self, name: str, rdtype: str = "A") -> list[str]:
        """Answer values for `name`/`rdtype` straight from this server (TXT unquoted)."""
        query = dns.message.make_query(name.rstrip(".") + ".", rdtype)
        response = dns.query.udp(query, self.address, port=self.port, timeout=5)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, self.address, port=self.port, timeout=5)
        wanted = dns.rdatatype.from_text(rdtype)
        values: list[str] = []
        for rrset in response.answer:
            if rrset.rdtype != wanted:
                continue
            for rdata in rrset:
                if wanted == dns.rdatatype.TXT:
                    values.append(b"".join(rdata.strings).decode())
                else:
                    values.append(rdata.to_text())
        return values

    def resolver(self) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this server."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.address]
        resolver.port = self.port
        resolver.lifetime = 5
        return resolver

    # -- certbot manual hooks -----------------------------------------------------------

    def hook_scripts(self, directory: Path) -> tuple[Path, Path]:
        """Write certbot `--manual-auth-hook` and `--manual-cleanup-hook` scripts.

        They set/remove `_acme-challenge.$CERTBOT_DOMAIN` TXT `$CERTBOT_VALIDATION` with
        nsupdate and this server's TSIG key; the auth hook returns once the record answers.
        """
        assert self.key_file is not None, "server not started"
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        values = dict(
            nsupdate=NSUPDATE,
            dig=DIG,
            key=shlex.quote(str(self.key_file)),
            address=self.address,
            port=self.port,
            ttl=TTL,
            answer=self.answer_address,
            zones=" ".join(sorted(self.zones, key=len, reverse=True)),
        )
        auth = directory / "dns-auth-hook.sh"
        cleanup = directory / "dns-cleanup-hook.sh"
        auth.write_text((_HOOK_COMMON + _AUTH_BODY).format(**values))
        cleanup.write_text((_HOOK_COMMON + _CLEANUP_BODY).format(**values))
        for script in (auth, cleanup):
            script.chmod(0o755)
        return auth, cleanup


def _txt_quote(value: str) -> str:
    if '"' in value or "\\" in value:
        raise ValueError(f"TXT value needs no quoting in tests: {value!r}")
    return f'"{value}"'


_HOOK_COMMON = """#!/bin/sh
# Written by tests/infra/bind.py for one test named; certbot sets CERTBOT_DOMAIN/VALIDATION.
set -eu
NAME="_acme-challenge.${{CERTBOT_DOMAIN#\\*.}}"
NAME=$(printf '%s' "$NAME" | tr 'A-Z' 'a-z')
ZONE=""
for z in {zones}; do
    case "$NAME" in *."$z") ZONE="$z"; break ;; esac
done
[ -n "$ZONE" ] || {{ echo "hook: $NAME is in no test zone" >&2; exit 1; }}
PARENT="${{NAME#_acme-challenge.}}"
update() {{
    {{ echo "server {address} {port}"; echo "zone $ZONE"; cat; echo send; }} \\
        | {nsupdate} -k {key} -t 10
}}
"""

_AUTH_BODY = """update <<EOF
update add $NAME. {ttl} TXT "$CERTBOT_VALIDATION"
update add $PARENT. {ttl} A {answer}
EOF
i=0
until {dig} +short +norecurse -p {port} @{address} TXT "$NAME." | grep -qF "$CERTBOT_VALIDATION"; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || {{ echo "hook: $NAME TXT not visible" >&2; exit 1; }}
    sleep 0.1
done
"""

_CLEANUP_BODY = """update <<EOF
update delete $NAME. TXT "$CERTBOT_VALIDATION"
EOF
"""
