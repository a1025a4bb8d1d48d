"""The CRDs in crds/ on a real API server: schema, defaults, CEL rules, printing, explain."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.infra.kube import ControlPlane, merge_patch

GROUP = "acme-gateway.io"
API = f"{GROUP}/v1alpha1"
DOMAIN_MESSAGE = "domain must be a DNS name like example.com; use allowWildcard instead of '*.'"


def registration(name: str, spec: dict[str, Any] | None = None) -> str:
    obj: dict[str, Any] = {
        "apiVersion": API,
        "kind": "AcmeRegistration",
        "metadata": {"name": name},
    }
    if spec is not None:
        obj["spec"] = spec
    return json.dumps(obj)


def allowed_domain(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": API, "kind": "AllowedDomain", "metadata": {"name": name}, "spec": spec}
    )


def create(cp: ControlPlane, ns: str, manifest: str) -> None:
    cp.kubectl("create", "-n", ns, "-f", "-", input=manifest)


def refused(cp: ControlPlane, *args: str, input: str | None = None) -> str:
    """Run a kubectl command that the API server must refuse; return its error output."""
    proc = cp.kubectl(*args, input=input, check=False)
    assert proc.returncode != 0, f"kubectl {args} was accepted:\n{proc.stdout}"
    return proc.stderr


def refused_create(cp: ControlPlane, ns: str, manifest: str) -> str:
    """Create `manifest` in `ns`, which the API server must refuse; return its error output."""
    return refused(cp, "create", "-n", ns, "-f", "-", input=manifest)


def get_json(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(cp.kubectl("get", "-n", ns, kind, name, "-o", "json").stdout)


def test_crds_established_with_names(control_plane: ControlPlane) -> None:
    for crd in (f"acmeregistrations.{GROUP}", f"alloweddomains.{GROUP}"):
        status = control_plane.kubectl(
            "get",
            "crd",
            crd,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Established")].status}',
        ).stdout
        assert status == "True"
    resources = control_plane.kubectl("api-resources", f"--api-group={GROUP}", "-o", "wide").stdout
    reg_line = next(line for line in resources.splitlines() if line.startswith("acmeregistrations"))
    dom_line = next(line for line in resources.splitlines() if line.startswith("alloweddomains"))
    assert "acmereg,areg" in reg_line and "acme-gateway" in reg_line and "true" in reg_line
    assert "allowdom" in dom_line and "acme-gateway" in dom_line


def test_server_version_is_honest(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"].startswith("v1.3")
    assert version["major"] == "1" and version["gitVersion"].startswith(f"v1.{version['minor']}.")
    assert version["gitTreeState"] == "clean"


def test_registration_defaults(control_plane: ControlPlane, kube_namespace: str) -> None:
    cp, ns = control_plane, kube_namespace
    create(cp, ns, registration("bare"))
    create(
        cp,
        ns,
        registration(
            "full",
            {"keyID": "team-a.key_1", "hmacKeySecretRef": {"name": "a-eab"}, "maxAccounts": 3},
        ),
    )
    bare = get_json(cp, ns, "acmeregistration", "bare")
    assert bare["spec"] == {"suspended": False}
    full = get_json(cp, ns, "areg", "full")["spec"]
    assert full == {
        "keyID": "team-a.key_1",
        "hmacKeySecretRef": {"name": "a-eab", "key": "secret"},
        "maxAccounts": 3,
        "suspended": False,
    }
    listed = cp.kubectl("get", "-n", ns, "acme-gateway", "-o", "name").stdout.split()
    assert sorted(listed) == sorted(
        [f"acmeregistration.{GROUP}/bare", f"acmeregistration.{GROUP}/full"]
    )


def test_alloweddomain_defaults(control_plane: ControlPlane, kube_namespace: str) -> None:
    cp, ns = control_plane, kube_namespace
    create(cp, ns, allowed_domain("d1", {"registrationName": "team-a", "domain": "Example.COM"}))
    create(
        cp,
        ns,
        allowed_domain(
            "d2",
            {
                "registrationName": "team-a",
                "domain": "a.b.example.org",
                "includeSubdomains": False,
                "allowWildcard": False,
            },
        ),
    )
    assert get_json(cp, ns, "allowdom", "d1")["spec"] == {
        "registrationName": "team-a",
        "domain": "Example.COM",
        "includeSubdomains": True,
        "allowWildcard": True,
    }
    spec = get_json(cp, ns, "alloweddomain", "d2")["spec"]
    assert spec["includeSubdomains"] is False and spec["allowWildcard"] is False


@pytest.mark.parametrize(
    "domain",
    [
        "*.example.com",
        "exa_mple.com",
        "example.com.",
        "-bad.example.com",
        "localhost",
        "a..example.com",
        "example.com/path",
        "x" * 64 + ".example.com",
    ],
)
def test_alloweddomain_refuses_bad_domain(
    control_plane: ControlPlane, kube_namespace: str, domain: str
) -> None:
    err = refused_create(
        control_plane,
        kube_namespace,
        allowed_domain("bad", {"registrationName": "team-a", "domain": domain}),
    )
    assert DOMAIN_MESSAGE in err
    assert "spec.domain" in err


def test_alloweddomain_requires_fields(control_plane: ControlPlane, kube_namespace: str) -> None:
    err = refused_create(
        control_plane, kube_namespace, allowed_domain("bad", {"domain": "example.com"})
    )
    assert "spec.registrationName: Required value" in err
    err = refused_create(
        control_plane,
        kube_namespace,
        allowed_domain("bad", {"registrationName": "Team_A", "domain": "example.com"}),
    )
    assert "registrationName must be the name of an AcmeRegistration" in err


def test_alloweddomain_immutable_fields(control_plane: ControlPlane, kube_namespace: str) -> None:
    cp, ns = control_plane, kube_namespace
    create(cp, ns, allowed_domain("d", {"registrationName": "team-a", "domain": "example.com"}))
    err = refused(cp, *merge_patch(ns, "alloweddomain", "d", {"spec": {"domain": "example.net"}}))
    assert "domain is immutable; delete this AllowedDomain and create a new one" in err
    err = refused(
        cp, *merge_patch(ns, "alloweddomain", "d", {"spec": {"registrationName": "team-b"}})
    )
    assert "registrationName is immutable" in err
    # Mutable fields still change.
    cp.kubectl(*merge_patch(ns, "alloweddomain", "d", {"spec": {"allowWildcard": False}}))
    assert get_json(cp, ns, "alloweddomain", "d")["spec"]["allowWildcard"] is False


def test_registration_refuses_max_accounts_zero(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    err = refused_create(control_plane, kube_namespace, registration("r", {"maxAccounts": 0}))
    assert "maxAccounts must be at least 1; omit it for no limit" in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"keyID": "has space"}, "keyID may contain only letters, digits, '.', '_' and '-'"),
        ({"keyID": ""}, "spec.keyID"),
        (
            {"hmacKeySecretRef": {"name": "Bad_Name"}},
            "hmacKeySecretRef.name must be a valid Secret name",
        ),
        (
            {"hmacKeySecretRef": {"name": "ok", "key": "no/slash"}},
            "hmacKeySecretRef.key must be a valid Secret data key",
        ),
        ({"hmacKeySecretRef": {"key": "secret"}}, "spec.hmacKeySecretRef.name: Required value"),
        ({"suspended": "yes"}, "spec.suspended"),
    ],
)
def test_registration_refuses_bad_spec(
    control_plane: ControlPlane, kube_namespace: str, spec: dict[str, Any], message: str
) -> None:
    err = refused_create(control_plane, kube_namespace, registration("r", spec))
    assert message in err


def test_registration_key_id_immutable(control_plane: ControlPlane, kube_namespace: str) -> None:
    cp, ns = control_plane, kube_namespace
    create(cp, ns, registration("with-kid", {"keyID": "kid-1"}))
    create(cp, ns, registration("no-kid", {}))
    err = refused(cp, *merge_patch(ns, "areg", "with-kid", {"spec": {"keyID": "kid-2"}}))
    assert "keyID is immutable; create a new AcmeRegistration to use another key ID" in err
    err = refused(
        cp,
        "patch",
        "-n",
        ns,
        "areg",
        "with-kid",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/keyID"}]',
    )
    assert "keyID cannot be added or removed after creation" in err
    err = refused(cp, *merge_patch(ns, "areg", "no-kid", {"spec": {"keyID": "late"}}))
    assert "keyID cannot be added or removed after creation" in err
    # Other fields stay editable, keyID unchanged.
    cp.kubectl(
        *merge_patch(ns, "areg", "with-kid", {"spec": {"suspended": True, "maxAccounts": 2}})
    )
    spec = get_json(cp, ns, "areg", "with-kid")["spec"]
    assert spec == {"keyID": "kid-1", "suspended": True, "maxAccounts": 2}


def test_explain_shows_descriptions(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("explain", "acmeregistration.spec").stdout
    for field in ("keyID", "hmacKeySecretRef", "maxAccounts", "suspended"):
        assert field in out
    assert "The EAB key ID" in out and "Immutable once set" in out
    assert "cert-manager" in out
    status = control_plane.kubectl("explain", "acmeregistration.status.accounts").stdout
    assert "keyThumbprint" in status and "RFC 7638" in status
    domain = control_plane.kubectl("explain", "alloweddomain.spec.domain").stdout
    assert "no wildcard, no trailing dot" in domain


def test_status_subresource_and_printer_columns(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    cp, ns = control_plane, kube_namespace
    create(cp, ns, registration("team-a", {"suspended": True}))
    create(
        cp,
        ns,
        allowed_domain("team-a-example", {"registrationName": "team-a", "domain": "example.com"}),
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Registered",
        "message": "in store",
        "lastTransitionTime": now,
    }
    status = {
        "status": {
            "keyID": f"{ns}.team-a",
            "accountCount": 2,
            "certificatesIssued": 5,
            "observedGeneration": 1,
            "conditions": [ready],
            "accounts": [
                {
                    "url": "https://acme.test/acct/1",
                    "status": "valid",
                    "keyThumbprint": "abc",
                    "created": now,
                }
            ],
        }
    }
    cp.kubectl(*merge_patch(ns, "areg", "team-a", status, "--subresource=status"))
    cp.kubectl(
        *merge_patch(
            ns,
            "allowdom",
            "team-a-example",
            {"status": {"conditions": [ready]}},
            "--subresource=status",
        )
    )
    # Status written through the main resource is ignored (status subresource is enabled).
    cp.kubectl(*merge_patch(ns, "areg", "team-a", {"status": {"accountCount": 99}}))
    assert get_json(cp, ns, "areg", "team-a")["status"]["accountCount"] == 2

    table = cp.kubectl("get", "-n", ns, "acmeregistrations").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "READY",
        "KEYID",
        "SUSPENDED",
        "ACCOUNTS",
        "CERTIFICATES",
        "AGE",
    ]
    assert table[1].split()[:6] == ["team-a", "True", f"{ns}.team-a", "true", "2", "5"]
    wide = cp.kubectl("get", "-n", ns, "areg", "-o", "wide").stdout.splitlines()
    assert "REASON" in wide[0].split() and "Registered" in wide[1].split()

    table = cp.kubectl("get", "-n", ns, "alloweddomains").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "REGISTRATION",
        "DOMAIN",
        "SUBDOMAINS",
        "WILDCARD",
        "READY",
        "AGE",
    ]
    assert table[1].split()[:6] == [
        "team-a-example",
        "team-a",
        "example.com",
        "true",
        "true",
        "True",
    ]


def _wait_gone(cp: ControlPlane, *args: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = cp.kubectl("get", *args, check=False)
        if proc.returncode != 0 and "NotFound" in proc.stderr:
            return
        time.sleep(0.5)
    raise AssertionError(f"{args} still exists after {timeout}s")


def test_owned_objects_are_garbage_collected(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    """What the operator relies on for exported certificate Secrets."""
    cp, ns = control_plane, kube_namespace
    create(cp, ns, registration("owner"))
    uid = get_json(cp, ns, "areg", "owner")["metadata"]["uid"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "acme-gateway.io/certificate",
        "metadata": {
            "name": "owner-cert-1",
            "ownerReferences": [
                {
                    "apiVersion": API,
                    "kind": "AcmeRegistration",
                    "name": "owner",
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "stringData": {"tls.crt": "x"},
    }
    create(cp, ns, json.dumps(secret))
    cp.kubectl("delete", "-n", ns, "areg", "owner")
    _wait_gone(cp, "-n", ns, "secret", "owner-cert-1")


def test_namespace_deletion_removes_custom_resources(control_plane: ControlPlane) -> None:
    cp = control_plane
    ns = f"t-nsdel-{time.monotonic_ns() % 10**8}"
    cp.kubectl("create", "namespace", ns)
    create(cp, ns, registration("r"))
    create(cp, ns, allowed_domain("d", {"registrationName": "r", "domain": "example.com"}))
    cp.kubectl("delete", "namespace", ns, "--wait=false")
    _wait_gone(cp, "namespace", ns, timeout=90)


# ---------------------------------------------------------------- issue 8: grants and limits

ANY_AND_DOMAIN = "anyDomain: true grants every DNS name and cannot be combined with domain"
DOMAIN_REQUIRED = "domain is required (a DNS name like example.com); to grant every name set"
WILDCARD_NEEDS_SUBDOMAINS = "includeSubdomains: false needs allowWildcard: false too"


def test_alloweddomain_any_domain_is_its_own_form(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    cp, ns = control_plane, kube_namespace
    both = {"registrationName": "r", "domain": "example.com", "anyDomain": True}
    assert ANY_AND_DOMAIN in refused_create(cp, ns, allowed_domain("both", both))
    assert DOMAIN_REQUIRED in refused_create(
        cp, ns, allowed_domain("none", {"registrationName": "r"})
    )
    off = {"registrationName": "r", "anyDomain": False}
    assert DOMAIN_REQUIRED in refused_create(cp, ns, allowed_domain("off", off))

    create(cp, ns, allowed_domain("any", {"registrationName": "r", "anyDomain": True}))
    assert get_json(cp, ns, "alloweddomain", "any")["spec"]["anyDomain"] is True
    err = refused(cp, *merge_patch(ns, "alloweddomain", "any", {"spec": {"anyDomain": False}}))
    assert "anyDomain is immutable" in err
    err = refused(cp, *merge_patch(ns, "alloweddomain", "any", {"spec": {"domain": "a.example"}}))
    assert "cannot be added or removed after creation" in err or ANY_AND_DOMAIN in err
    wide = cp.kubectl("get", "-n", ns, "alloweddomain", "any", "-o", "wide").stdout.splitlines()
    assert "ANYDOMAIN" in wide[0].split() and "true" in wide[1].split()


@pytest.mark.parametrize(
    "spec",
    [
        {"includeSubdomains": False},  # allowWildcard defaults to true
        {"includeSubdomains": False, "allowWildcard": True},
    ],
)
def test_alloweddomain_wildcard_needs_subdomains(
    control_plane: ControlPlane, kube_namespace: str, spec: dict[str, Any]
) -> None:
    cp, ns = control_plane, kube_namespace
    full = {"registrationName": "r", "domain": "example.com", **spec}
    err = refused_create(cp, ns, allowed_domain("exact", full))
    assert WILDCARD_NEEDS_SUBDOMAINS in err and "set allowWildcard: false" in err


def test_alloweddomain_exact_name_form(control_plane: ControlPlane, kube_namespace: str) -> None:
    cp, ns = control_plane, kube_namespace
    spec = {
        "registrationName": "r",
        "domain": "example.com",
        "includeSubdomains": False,
        "allowWildcard": False,
    }
    create(cp, ns, allowed_domain("exact", spec))
    assert get_json(cp, ns, "alloweddomain", "exact")["spec"] == spec
    # Turning the wildcard back on later is refused the same way.
    err = refused(cp, *merge_patch(ns, "alloweddomain", "exact", {"spec": {"allowWildcard": True}}))
    assert WILDCARD_NEEDS_SUBDOMAINS in err
    create(cp, ns, allowed_domain("wide", {"registrationName": "r", "domain": "example.org"}))
    err = refused(
        cp, *merge_patch(ns, "alloweddomain", "wide", {"spec": {"includeSubdomains": False}})
    )
    assert WILDCARD_NEEDS_SUBDOMAINS in err


def test_registration_limits(control_plane: ControlPlane, kube_namespace: str) -> None:
    cp, ns = control_plane, kube_namespace
    for field in ("maxPendingOrders", "maxPendingAuthorizations"):
        err = refused_create(cp, ns, registration("r", {"limits": {field: 0}}))
        assert f"limits.{field} must be at least 1" in err
    limits = {"maxPendingOrders": 5, "maxPendingAuthorizations": 20}
    create(cp, ns, registration("limited", {"limits": limits}))
    assert get_json(cp, ns, "areg", "limited")["spec"]["limits"] == limits
    out = cp.kubectl("explain", "acmeregistration.spec.keyID").stdout
    assert "prefixes" in out and "team-a.web" in out


def test_registration_key_id_leaves_room_for_the_namespace(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    err = refused_create(control_plane, kube_namespace, registration("r", {"keyID": "k" * 191}))
    assert "spec.keyID" in err and "190" in err
    create(control_plane, kube_namespace, registration("ok", {"keyID": "k" * 190}))


IP_RANGE_SYNTAX = "ipRange must be a CIDR network like 10.0.0.0/8"
IP_RANGE_ALONE = "ipRange grants IP addresses and cannot be combined with domain or anyDomain"


@pytest.mark.parametrize(
    ("ip_range", "message"),
    [
        ("10.1.2.3/8", "ipRange 10.1.2.3/8 has host bits set: write the address the network"),
        ("2001:db8::1/32", "ipRange 2001:db8::1/32 has host bits set: write the address"),
        ("10.0.0.1", IP_RANGE_SYNTAX),
        ("10.0.0.0/33", IP_RANGE_SYNTAX),
        ("example.com/8", IP_RANGE_SYNTAX),
        ("::ffff:10.0.0.0/104", IP_RANGE_SYNTAX),
    ],
)
def test_alloweddomain_refuses_bad_ip_range(
    control_plane: ControlPlane, kube_namespace: str, ip_range: str, message: str
) -> None:
    err = refused_create(
        control_plane,
        kube_namespace,
        allowed_domain("bad", {"registrationName": "r", "ipRange": ip_range}),
    )
    assert message in err, err
    assert "spec.ipRange" in err


def test_alloweddomain_ip_range_is_its_own_form(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    cp, ns = control_plane, kube_namespace
    for extra in ({"domain": "example.com"}, {"anyDomain": True}):
        spec = {"registrationName": "r", "ipRange": "10.0.0.0/8", **extra}
        assert IP_RANGE_ALONE in refused_create(cp, ns, allowed_domain("both", spec))
    for name, cidr in (("v4", "10.0.0.0/8"), ("v6", "2001:db8::/32"), ("one", "192.0.2.7/32")):
        create(cp, ns, allowed_domain(name, {"registrationName": "r", "ipRange": cidr}))
        assert get_json(cp, ns, "alloweddomain", name)["spec"]["ipRange"] == cidr
    err = refused(cp, *merge_patch(ns, "alloweddomain", "v4", {"spec": {"ipRange": "11.0.0.0/8"}}))
    assert "ipRange is immutable" in err
    wide = cp.kubectl("get", "-n", ns, "alloweddomain", "v6", "-o", "wide").stdout.splitlines()
    assert "IPRANGE" in wide[0].split() and "2001:db8::/32" in wide[1].split()
