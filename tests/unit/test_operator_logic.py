"""The operator's pure logic (no cluster, no store): HMAC key checks, allow-lists, key IDs,
Secret names and ownership, the generated CA. Moved here from tests/kube (issue 9 item 7)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from acme_operator.ca_secret import generate_ca
from acme_operator.cert_secret import secret_name as cert_secret_name
from acme_operator.domains import allow_list, entry_from_spec
from acme_operator.hmac_secret import (
    InvalidKeyError,
    Ownership,
    SecretRef,
    build_secret,
    check_key_text,
    ownership,
)
from acme_operator.labels import label_value
from acme_operator.owners import registration_owner
from acme_operator.reconcile import effective_kid

from acme_server.ca.given import load_given
from acme_server.domain.identifiers import DomainRule


def test_hmac_key_validation_says_what_to_fix() -> None:
    ref = SecretRef("eab", "secret")
    good = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    assert check_key_text(good, ref) == good
    cases = {
        good + "\n": "newline",
        base64.urlsafe_b64encode(os.urandom(32)).decode(): "unpadded",  # 32 bytes -> "=" pad
        good.replace(good[0], "+", 1): "base64url",
        base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(): "at least 32",
    }
    for text, hint in cases.items():
        with pytest.raises(InvalidKeyError, match=hint):
            check_key_text(text, ref)


def test_all_invalid_domains_fail_closed() -> None:
    bad = entry_from_spec("bad", {"domain": "host.123"})
    good = entry_from_spec("good", {"domain": "Example.COM", "includeSubdomains": False})
    assert bad.rule is None and bad.error and "example.com" in bad.error
    assert allow_list([bad]).grants_nothing
    mixed = allow_list([bad, good])
    assert not mixed.grants_nothing
    # includeSubdomains: false never allows *.example.com, whatever allowWildcard says.
    assert mixed.rules == [DomainRule("example.com", False, False)]
    assert allow_list([]).grants_nothing  # no AllowedDomain: no name (issue 8)
    assert not allow_list([]).any_domain


def test_any_domain_is_an_explicit_grant() -> None:
    everything = entry_from_spec("all", {"anyDomain": True})
    assert everything.error is None and everything.any_domain and everything.rule is None
    listed = allow_list([everything, entry_from_spec("one", {"domain": "a.example"})])
    assert listed.any_domain and not listed.grants_nothing
    both = entry_from_spec("both", {"anyDomain": True, "domain": "a.example"})
    assert both.error is not None and not both.any_domain
    assert allow_list([both]).grants_nothing  # an invalid grant grants nothing
    assert not entry_from_spec("off", {"anyDomain": False, "domain": "a.example"}).any_domain


def test_key_ids_are_forced_into_the_namespace() -> None:
    assert effective_kid("team-a", "web", {}) == "team-a.web"
    assert effective_kid("team-a", "web", {"keyID": "custom"}) == "team-a.custom"
    assert effective_kid("team-a", "web", {"keyID": "team-a.custom"}) == "team-a.custom"
    # Another namespace's default cannot be reached: it gets this namespace's prefix.
    assert effective_kid("team-b", "x", {"keyID": "team-a.web"}) == "team-b.team-a.web"


def test_certificate_secret_names_are_dns_safe() -> None:
    long_name = "a" * 250
    name = cert_secret_name(long_name, "ABCDEF0123")
    assert len(name) <= 253 and name.endswith("-cert-abcdef0123")
    assert len(label_value(long_name)) <= 63
    assert label_value("short") == "short"


def test_hmac_secret_ownership_needs_our_marker_for_this_registration() -> None:
    ref = SecretRef("shared", "secret")
    made_for_a = build_secret(namespace="ns", registration="a", uid="uid-a", ref=ref, hmac_key="k")
    assert ownership(made_for_a, "a", "uid-a") is Ownership.MINE
    assert ownership(made_for_a, "b", "uid-b") is Ownership.OTHER_REGISTRATION
    # "a" deleted and re-created (new uid) before garbage collection: adoptable by "a" only.
    assert ownership(made_for_a, "a", "uid-a2") is Ownership.ADOPTABLE
    orphan = {**made_for_a, "metadata": {**made_for_a["metadata"], "ownerReferences": []}}
    assert ownership(orphan, "a", "uid-a2") is Ownership.ADOPTABLE
    assert ownership(orphan, "b", "uid-b") is Ownership.OTHER_REGISTRATION
    admin = {"metadata": {"name": "shared"}, "data": {}}
    assert ownership(admin, "a", "uid-a") is Ownership.FOREIGN
    # Our labels copied onto a Secret owned by another registration do not make it adoptable.
    forged = {**made_for_a, "metadata": {**made_for_a["metadata"]}}
    forged["metadata"]["ownerReferences"] = [registration_owner("c", "uid-c")]
    assert ownership(forged, "a", "uid-a2") is Ownership.OTHER_REGISTRATION


def test_generated_ca_is_a_usable_issuing_ca(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_ca("test CA")
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    ca = load_given(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert ca.issuer == ca.root  # one self-signed CA, as the chart always generated
    assert generate_ca("test CA") != (cert_pem, key_pem)  # a new key each time


def test_hmac_key_must_be_canonical_base64url() -> None:
    """The project's one strict codec decides: a second spelling of a key is refused."""
    ref = SecretRef("eab", "secret")
    good = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()  # 43 chars, ends "A"
    assert check_key_text(good, ref) == good
    other_spelling = good[:-1] + "B"  # same 32 bytes, non-zero padding bits
    assert base64.urlsafe_b64decode(other_spelling + "=") == bytes(32)
    with pytest.raises(InvalidKeyError, match="not valid base64url"):
        check_key_text(other_spelling, ref)
    with pytest.raises(InvalidKeyError, match="not valid base64url"):
        check_key_text(good + "AA", ref)  # 45 characters: an impossible length
