"""cert-manager's `spec.acme.profile` (v1.21) against our profiles: an Issuer asking for
`shortlived` gets a 7-day certificate; an Issuer of a registration not allowed the profile
gets `invalidProfile`, with our detail, in `kubectl describe certificate`."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from tests.certmanager.conftest import CertManagerWorld
from tests.certmanager.support import ISSUE_TIMEOUT, verify_tls_secret, wait_ready
from tests.polling import wait_for

RESTRICTED = "team-restricted"  # a registration allowed only the `default` profile


def _issuer(
    cm: CertManagerWorld, name: str, key_id: str, eab_secret: str, **acme: Any
) -> dict[str, Any]:
    """The README's Issuer (docs/examples/cert-manager/issuer.yaml) with `acme` added."""
    issuer: dict[str, Any] = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": name},
        "spec": {
            "acme": {
                "server": cm.gateway.directory_url,
                "caBundle": cm.values(cm.team_ns)["ACME_CA_BUNDLE"],
                "privateKeySecretRef": {"name": f"{name}-account-key"},
                "externalAccountBinding": {
                    "keyID": key_id,
                    "keySecretRef": {"name": eab_secret, "key": "secret"},
                },
                "solvers": [
                    {
                        "dns01": {
                            "rfc2136": {
                                "nameserver": cm.bind.resolver_address,
                                "tsigKeyName": cm.bind.key_name,
                                "tsigAlgorithm": "HMACSHA256",
                                "tsigSecretSecretRef": {
                                    "name": "rfc2136-tsig",
                                    "key": "tsig-secret",
                                },
                            }
                        }
                    }
                ],
            }
        },
    }
    issuer["spec"]["acme"].update(acme)
    return issuer


def _certificate(name: str, issuer: str, dns_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": [dns_name],
            "issuerRef": {"kind": "Issuer", "name": issuer},
            **spec,
        },
    }


def _apply(cm: CertManagerWorld, *objects: dict[str, Any]) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    cm.cp.kubectl("apply", "-n", cm.team_ns, "-f", "-", input=body)


def _key_id(cm: CertManagerWorld, name: str) -> str | None:
    reg = cm.get(cm.team_ns, "acmeregistration", name)
    key_id = ((reg or {}).get("status") or {}).get("keyID")
    ready = key_id and cm.get(cm.team_ns, "secret", f"{name}-eab") is not None
    return str(key_id) if ready else None


@pytest.fixture(scope="module")
def profile_objects(cm: CertManagerWorld) -> CertManagerWorld:
    """Both scenarios applied at once: each dns-01 challenge costs cert-manager 60 s."""
    domain = cm.domain(cm.team_ns)
    restricted = {
        "apiVersion": "acme-gateway.io/v1alpha1",
        "kind": "AcmeRegistration",
        "metadata": {"name": RESTRICTED},
        "spec": {"profiles": ["default"], "defaultProfile": "default"},
    }
    grant = {
        "apiVersion": "acme-gateway.io/v1alpha1",
        "kind": "AllowedDomain",
        "metadata": {"name": f"{RESTRICTED}-domain"},
        "spec": {"registrationName": RESTRICTED, "domain": f"restricted.{domain}"},
    }
    _apply(cm, restricted, grant)
    key_id = wait_for(
        f"registration {RESTRICTED} reconciled",
        functools.partial(_key_id, cm, RESTRICTED),
        90,
        0.5,
    )
    # The same account key as the README's Issuer: one account, not another of maxAccounts.
    same_account = {"privateKeySecretRef": {"name": "acme-gateway-account-key"}}
    team_kid = cm.key_ids[cm.team_ns]
    short = _issuer(
        cm, "acme-gateway-short", team_kid, "team-a-eab", profile="shortlived", **same_account
    )
    duration = _issuer(
        cm,
        "acme-gateway-duration",
        team_kid,
        "team-a-eab",
        enableDurationFeature=True,
        **same_account,
    )
    refused = _issuer(
        cm, "acme-gateway-restricted", key_id, f"{RESTRICTED}-eab", profile="shortlived"
    )
    _apply(
        cm,
        short,
        duration,
        refused,
        _certificate("short", "acme-gateway-short", f"short.{domain}"),
        _certificate("duration", "acme-gateway-duration", f"duration.{domain}", duration="240h"),
        _certificate("refused-profile", "acme-gateway-restricted", f"restricted.{domain}"),
    )
    return cm


def test_issuer_profile_shortlived_gets_7_days(profile_objects: CertManagerWorld) -> None:
    cm = profile_objects
    wait_ready(cm, cm.team_ns, "certificate", "short", ISSUE_TIMEOUT)
    leaf = verify_tls_secret(cm, cm.team_ns, "short-tls", [f"short.{cm.domain(cm.team_ns)}"])
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 7 * 86400 <= lifetime.total_seconds() <= 7 * 86400 + 120, lifetime
    orders = [
        o
        for o in cm.items(cm.team_ns, "orders.acme.cert-manager.io")
        if o["spec"]["dnsNames"] == [f"short.{cm.domain(cm.team_ns)}"]
    ]
    assert orders and orders[0]["spec"].get("profile") == "shortlived", orders


def test_profile_not_allowed_shows_in_describe(profile_objects: CertManagerWorld) -> None:
    cm = profile_objects
    wanted = "'shortlived' is not allowed for this account's registration (allowed: default)"

    def described() -> str | None:
        out = cm.kubectl("describe", "-n", cm.team_ns, "certificate", "refused-profile")
        return out if "invalidProfile" in out else None

    out = wait_for("invalidProfile in the Certificate's description", described, ISSUE_TIMEOUT, 3)
    # kubectl wraps long messages: compare without line breaks and indentation.
    flat = " ".join(out.split())
    assert wanted in flat, out
    assert cm.get(cm.team_ns, "secret", "refused-profile-tls") is None


def test_enable_duration_feature_sends_not_after(profile_objects: CertManagerWorld) -> None:
    """cert-manager's enableDurationFeature: notAfter from the Certificate's duration (240h),
    within the default profile's bounds, is what the leaf carries."""
    cm = profile_objects
    wait_ready(cm, cm.team_ns, "certificate", "duration", ISSUE_TIMEOUT)
    name = f"duration.{cm.domain(cm.team_ns)}"
    leaf = verify_tls_secret(cm, cm.team_ns, "duration-tls", [name])
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    # notAfter is set when cert-manager creates the order; the leaf starts at finalize.
    assert abs(lifetime - 240 * 3600) < 600, lifetime
    orders = [
        o
        for o in cm.items(cm.team_ns, "orders.acme.cert-manager.io")
        if o["spec"]["dnsNames"] == [name]
    ]
    assert orders and orders[0]["spec"].get("duration") == "240h0m0s", orders
