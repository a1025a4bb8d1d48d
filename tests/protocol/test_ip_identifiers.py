"""RFC 8738 IP identifiers over real HTTPS, on SQLite and PostgreSQL.

Canonical forms, range grants (and their absence), http-01 against the address itself,
finalize with iPAddress SANs, CSR mismatches, no dns-01 and no wildcards for addresses,
and an ip authorization never standing for a dns name of the same text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_server.store import orders as order_store
from acme_server.store.database import Database, default_database_url
from tests.gateway_proc import GatewayProcess
from tests.protocol.support import Acme, assert_problem, unique

LOOP4 = "127.0.0.1"


def ip_csr(
    ips: list[str], dns: tuple[str, ...] = (), cn: str | None = None, as_dns: tuple[str, ...] = ()
) -> bytes:
    """A CSR with `ips` as iPAddress SANs, `dns` (and `as_dns`, IP text in dNSName SANs)
    as dNSName SANs, and `cn` as its CN when given."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.DNSName(n) for n in (*dns, *as_dns)]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


class IpAcme(Acme):
    def new_order_typed(self, idents: list[tuple[str, str]]) -> requests.Response:
        return self.post(
            self.directory["newOrder"],
            {"identifiers": [{"type": t, "value": v} for t, v in idents]},
        )

    def order_typed(self, idents: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
        resp = self.new_order_typed(idents)
        assert resp.status_code == 201, resp.text
        return resp.headers["Location"], resp.json()


def _account(gw: GatewayProcess, *grant: str) -> tuple[IpAcme, dict[str, Any]]:
    reg = gw.create_registration(f"ip-{uuid.uuid4().hex[:10]}", *grant)
    acme = IpAcme(gw)
    acme.register(reg)
    return acme, reg


@pytest.fixture(scope="module")
def loop_account(prereg_gateway: GatewayProcess) -> IpAcme:
    """Granted loopback (v4 and v6) and the acme.test zone."""
    return _account(
        prereg_gateway,
        "--ip-range",
        "127.0.0.0/8",
        "--ip-range",
        "::1/128",
        "--domain",
        "acme.test",
    )[0]


class _Recorder(BaseHTTPRequestHandler):
    """http-01 responder that also records the Host header of every request."""

    tokens: dict[str, str]
    hosts: list[str]
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.hosts.append(self.headers.get("Host", ""))
        body = self.tokens.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        if body is not None:
            self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def recording_responder(
    port: int, address: str = LOOP4
) -> Iterator[tuple[dict[str, str], list[str]]]:
    """The responder on `address` (validation connects to the ip identifier itself)."""
    tokens: dict[str, str] = {}
    hosts: list[str] = []
    handler = type("Handler", (_Recorder,), {"tokens": tokens, "hosts": hosts})
    server_class = type(
        "Server",
        (ThreadingHTTPServer,),
        {"address_family": socket.AF_INET6 if ":" in address else socket.AF_INET},
    )
    server = server_class((address, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tokens, hosts
    finally:
        server.shutdown()
        server.server_close()


def _validate(
    acme: IpAcme, order: dict[str, Any], *, body: str | None = None, address: str = LOOP4
) -> list[str]:
    """Answer every pending authorization with http-01; the Host headers the server sent."""
    with recording_responder(acme.gw.http01_port, address) as (tokens, hosts):
        pending = []
        for url, authz in acme.authorizations(order):
            if authz["status"] != "pending":
                continue
            chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
            tokens[chall["token"]] = body or f"{chall['token']}.{acme.key_thumbprint()}"
            assert acme.post(chall["url"], {}).status_code == 200
            pending.append(url)
        for url in pending:
            acme.wait(url, {"valid", "invalid"})
        return list(hosts)


def _ready(
    acme: IpAcme, idents: list[tuple[str, str]], address: str = LOOP4
) -> tuple[str, dict[str, Any], list[str]]:
    url, order = acme.order_typed(idents)
    hosts = _validate(acme, order, address=address)
    order = acme.wait(url, {"ready", "invalid"})
    assert order["status"] == "ready", order
    return url, order, hosts


def _sub(doc: dict[str, Any]) -> list[tuple[dict[str, str], str]]:
    return [(s["identifier"], s["type"].rsplit(":", 1)[1]) for s in doc.get("subproblems", [])]


@pytest.mark.parametrize("value", [LOOP4, "127.0.0.2", "::1"])
def test_canonical_addresses_get_http01_and_tls_alpn01_never_dns01(
    loop_account: IpAcme, value: str
) -> None:
    _, order = loop_account.order_typed([("ip", value)])
    assert order["identifiers"] == [{"type": "ip", "value": value}]
    ((_, authz),) = loop_account.authorizations(order)
    assert authz["identifier"] == {"type": "ip", "value": value}
    assert "wildcard" not in authz
    assert sorted(c["type"] for c in authz["challenges"]) == ["http-01", "tls-alpn-01"]


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("127.000.000.001", LOOP4),
        ("127.0.0.01", LOOP4),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("0000::1", "::1"),
        ("2001:DB8::1", "2001:db8::1"),
    ],
)
def test_non_canonical_address_is_malformed_naming_the_canonical_form(
    loop_account: IpAcme, value: str, canonical: str
) -> None:
    resp = loop_account.new_order_typed([("ip", value)])
    doc = assert_problem(resp, "malformed", 400, f"write it as {canonical}")
    assert _sub(doc) == [({"type": "ip", "value": value}, "malformed")]


@pytest.mark.parametrize("value", ["127.0.0.1/32", "fe80::1%lo", "127.1", "localhost"])
def test_non_address_is_malformed(loop_account: IpAcme, value: str) -> None:
    doc = assert_problem(loop_account.new_order_typed([("ip", value)]), "malformed", 400)
    assert _sub(doc) == [({"type": "ip", "value": value}, "malformed")]


@pytest.mark.parametrize("value", ["*.127.0.0.1", "127.0.0.*"])
def test_wildcard_address_refused(loop_account: IpAcme, value: str) -> None:
    resp = loop_account.new_order_typed([("ip", value)])
    doc = assert_problem(resp, "rejectedIdentifier", 400, "never a wildcard")
    assert _sub(doc) == [({"type": "ip", "value": value}, "rejectedIdentifier")]


def test_ipv4_mapped_address_refused(loop_account: IpAcme) -> None:
    resp = loop_account.new_order_typed([("ip", "::ffff:127.0.0.1")])
    assert_problem(resp, "rejectedIdentifier", 400, "request the IPv4 address 127.0.0.1")


def test_address_as_dns_name_stays_refused(loop_account: IpAcme) -> None:
    resp = loop_account.new_order_typed([("dns", LOOP4)])
    doc = assert_problem(resp, "rejectedIdentifier", 400, "use an identifier of type ip")
    assert _sub(doc) == [({"type": "dns", "value": LOOP4}, "rejectedIdentifier")]


@pytest.mark.parametrize(
    "grant", [("--domain", "acme.test"), ("--any-domain",)], ids=["domain", "any-domain"]
)
def test_no_ip_range_grant_means_rejected(
    prereg_gateway: GatewayProcess, grant: tuple[str, ...]
) -> None:
    acme, reg = _account(prereg_gateway, *grant)
    name = unique()
    resp = acme.new_order_typed([("dns", name), ("ip", LOOP4)])
    doc = assert_problem(resp, "rejectedIdentifier", 400, "an IP address needs an IP range grant")
    assert ({"type": "ip", "value": LOOP4}, "rejectedIdentifier") in _sub(doc)
    assert str(reg["kid"]) in doc["detail"]
    assert acme.new_order_typed([("dns", name)]).status_code == 201  # the names still work


def test_range_grants_only_its_addresses_and_follows_the_cli(
    prereg_gateway: GatewayProcess,
) -> None:
    acme, reg = _account(prereg_gateway, "--ip-range", "127.0.5.0/24")
    assert acme.new_order_typed([("ip", "127.0.5.9")]).status_code == 201
    for outside in ("127.0.6.1", "::1"):
        doc = assert_problem(
            acme.new_order_typed([("ip", outside)]), "rejectedIdentifier", 400, "127.0.5.0/24"
        )
        assert _sub(doc) == [({"type": "ip", "value": outside}, "rejectedIdentifier")]
    name = str(reg["name"])
    out = prereg_gateway.cli(
        "registration", "add-domain", name, "--ip-range", "::1/128", check=False
    )
    assert '"ip_ranges": ["127.0.5.0/24", "::1/128"]' in out, out
    assert acme.new_order_typed([("ip", "::1")]).status_code == 201
    prereg_gateway.cli("registration", "remove-domain", name, "--ip-range", "127.0.5.0/24")
    assert_problem(acme.new_order_typed([("ip", "127.0.5.9")]), "rejectedIdentifier", 400)
    prereg_gateway.cli("registration", "remove-domain", name, "--ip-range", "::1/128")
    doc = assert_problem(
        acme.new_order_typed([("ip", "::1")]), "rejectedIdentifier", 400, "no domain was granted"
    )
    assert _sub(doc) == [({"type": "ip", "value": "::1"}, "rejectedIdentifier")]


def test_cli_refuses_a_range_with_host_bits(prereg_gateway: GatewayProcess) -> None:
    out = prereg_gateway.cli(
        "registration", "create", f"ip-{uuid.uuid4().hex[:8]}", "--ip-range", "10.1.2.3/8",
        check=False,
    )  # fmt: skip
    assert "host bits set; write the network as 10.0.0.0/8" in out, out


def test_open_mode_refuses_addresses_without_a_server_range(gateway: GatewayProcess) -> None:
    acme = IpAcme(gateway)
    acme.register()
    doc = assert_problem(
        acme.new_order_typed([("ip", LOOP4)]), "rejectedIdentifier", 400, "no IP range is granted"
    )
    assert _sub(doc) == [({"type": "ip", "value": LOOP4}, "rejectedIdentifier")]
    assert acme.new_order_typed([("dns", unique())]).status_code == 201


@pytest.fixture(scope="module")
def open_ip_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Open mode granting 127.0.0.0/24 to accounts without a pre-registration (SQLite: the
    flag is server policy, the store is not involved)."""
    gw = GatewayProcess(
        tmp_path_factory.mktemp("gw-open-ip"), extra_args=("--open-ip-range", "127.0.0.0/24")
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_open_mode_grants_the_servers_open_ip_ranges(open_ip_gateway: GatewayProcess) -> None:
    acme = IpAcme(open_ip_gateway)
    acme.register()
    url, order, _ = _ready(acme, [("ip", LOOP4)])
    resp = acme.finalize(order, ip_csr([LOOP4]))
    assert resp.status_code == 200, resp.text
    assert acme.wait(url, {"valid", "invalid"})["status"] == "valid"
    doc = assert_problem(
        acme.new_order_typed([("ip", "127.0.1.1")]),
        "rejectedIdentifier",
        400,
        "outside the IP ranges granted without a pre-registration (127.0.0.0/24)",
    )
    assert _sub(doc) == [({"type": "ip", "value": "127.0.1.1"}, "rejectedIdentifier")]


def test_issue_with_ip_and_dns_sans_validating_the_address_itself(
    loop_account: IpAcme,
) -> None:
    name = unique("mixed")
    url, order, hosts = _ready(loop_account, [("ip", LOOP4), ("dns", name)])
    # RFC 8738 section 4: the server connects to the address, Host is the address itself.
    port = loop_account.gw.http01_port
    assert sorted(hosts) == sorted([f"{LOOP4}:{port}", f"{name}:{port}"]), hosts
    resp = loop_account.finalize(order, ip_csr([LOOP4], (name,), cn=name))
    assert resp.status_code == 200, resp.text
    done = loop_account.wait(url, {"valid", "invalid"})
    assert done["status"] == "valid", done
    cert = x509.load_pem_x509_certificate(loop_account.get(done["certificate"]).content)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(LOOP4)]
    assert san.get_values_for_type(x509.DNSName) == [name]
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cns] == [name]  # never an address in the CN


def test_ipv6_only_certificate_has_no_common_name(loop_account: IpAcme) -> None:
    url, order, hosts = _ready(loop_account, [("ip", "::1")], "::1")
    assert hosts == [f"[::1]:{loop_account.gw.http01_port}"]
    resp = loop_account.finalize(order, ip_csr(["::1"]))
    assert resp.status_code == 200, resp.text
    done = loop_account.wait(url, {"valid", "invalid"})
    cert = x509.load_pem_x509_certificate(loop_account.get(done["certificate"]).content)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]
    assert san.critical and len(cert.subject) == 0  # RFC 5280: empty subject, critical SAN


@pytest.mark.parametrize(
    ("csr_args", "detail"),
    [
        (
            {"ips": [], "as_dns": (LOOP4,)},
            "missing IP address 127.0.0.1; not in the order 127.0.0.1",
        ),
        ({"ips": ["127.0.0.2"]}, "not in the order IP address 127.0.0.2"),
        ({"ips": [LOOP4, "127.0.0.2"]}, "not in the order IP address 127.0.0.2"),
        ({"ips": [LOOP4], "cn": "127.0.0.2"}, "not in the order IP address 127.0.0.2"),
        ({"ips": [LOOP4], "cn": "127.000.0.1"}, "not in the order 127.000.0.1"),
        ({"ips": [LOOP4], "dns": ("extra.acme.test",)}, "not in the order extra.acme.test"),
    ],
    ids=["ip-as-dns-san", "other-ip", "extra-ip", "ip-cn", "non-canonical-cn", "extra-dns"],
)
def test_csr_must_name_exactly_the_orders_addresses(
    loop_account: IpAcme, csr_args: dict[str, Any], detail: str
) -> None:
    url, order, _ = _ready(loop_account, [("ip", LOOP4)])
    resp = loop_account.finalize(order, ip_csr(**csr_args))
    assert_problem(resp, "badCSR", 400, detail)
    assert loop_account.get(url).json()["status"] == "ready"  # nothing was issued


def test_failed_validation_names_the_ip_identifier(loop_account: IpAcme) -> None:
    url, order = loop_account.order_typed([("ip", "127.0.0.3")])
    _validate(loop_account, order, body="not-the-key-authorization", address="127.0.0.3")
    ((_, authz),) = loop_account.authorizations(order)
    assert authz["status"] == "invalid"
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert chall["error"]["identifier"] == {"type": "ip", "value": "127.0.0.3"}
    assert chall["error"]["type"].endswith(":unauthorized"), chall["error"]
    assert loop_account.wait(url, {"invalid"})["error"]["identifier"]["type"] == "ip"


def test_ip_authorization_is_reused_only_for_the_ip_identifier(loop_account: IpAcme) -> None:
    _, first, _ = _ready(loop_account, [("ip", "127.0.0.4")], "127.0.0.4")
    _, again = loop_account.order_typed([("ip", "127.0.0.4")])
    assert again["status"] == "ready" and again["authorizations"] == first["authorizations"]
    gw = loop_account.gw
    account_id = loop_account.account.rsplit("/", 1)[-1]

    async def lookup() -> tuple[str | None, str | None]:
        db = await Database.open(gw.database or default_database_url(gw.data_dir), migrate=False)
        try:
            now = datetime.now(UTC)
            return await db.read(
                lambda conn: (
                    order_store.find_reusable_authz(
                        conn, account_id, "127.0.0.4", False, now, "ip"
                    ),
                    order_store.find_reusable_authz(
                        conn, account_id, "127.0.0.4", False, now, "dns"
                    ),
                )
            )
        finally:
            await db.close()

    as_ip, as_dns = asyncio.run(lookup())
    assert as_ip is not None and first["authorizations"][0].endswith(as_ip)
    assert as_dns is None  # the store never hands an ip authorization to a dns name
