"""The pure CAA policy (acme_server/domain/caa.py): RFC 8659 §4 and RFC 8657, record by record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_server.domain.caa import (
    CaaRecord,
    CaaSyntaxError,
    evaluate,
    normalize_identity,
    parse_issue_value,
)
from acme_server.domain.statuses import AuthorizationStatus
from acme_server.store.orders import Authorization
from acme_server.validation.caa_recheck import stale

OURS = "ca.acme.test"
ACCOUNT = "https://acme.acme.test/acme/acct/abc123"


def decide(
    *records: CaaRecord, wildcard: bool = False, method: str = "dns-01", account: str = ACCOUNT
) -> tuple[bool, str]:
    decision = evaluate(
        list(records),
        found_at="example.test",
        wildcard=wildcard,
        identities=[OURS, "other-name-of-ours.test"],
        account_uri=account,
        method=method,
    )
    return decision.allowed, decision.reason


def issue(value: str, flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, "issue", value)


def issuewild(value: str, flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, "issuewild", value)


def test_no_records_allow() -> None:
    assert decide() == (True, "no CAA records")


@pytest.mark.parametrize(
    "value",
    [OURS, f" {OURS} ", f"{OURS};", f"{OURS}; ", "CA.Acme.Test", "other-name-of-ours.test"],
)
def test_issue_naming_us_allows(value: str) -> None:
    assert decide(issue(value))[0]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("other-ca.test", "names another CA"),
        (";", "no CA may issue"),
        ("", "no CA may issue"),
        ("  ", "no CA may issue"),
        ("ca.acme.test.evil.test", "names another CA"),
        ("acme.test", "names another CA"),
        ("-bad-.test", "malformed"),
        (f"{OURS}; novalue", "malformed"),
        (f"{OURS}; ta_g=x", "malformed"),
        (f"{OURS}; tag=a b", "malformed"),
    ],
)
def test_issue_not_naming_us_refuses_with_the_record_and_why(value: str, why: str) -> None:
    allowed, reason = decide(issue(value))
    assert not allowed
    assert reason.startswith("CAA record for example.test prevents issuance: ")
    assert f'0 issue "{value}"' in reason
    assert why in reason


def test_any_record_naming_us_is_enough() -> None:
    assert decide(issue("other-ca.test"), issue(";"), issue(OURS))[0]


def test_issuewild_is_ignored_for_non_wildcard_names() -> None:
    assert decide(issuewild(";"))[0]
    assert not decide(issuewild(OURS), issue("other-ca.test"))[0]


def test_issuewild_replaces_issue_for_wildcard_names() -> None:
    assert decide(issue(";"), issuewild(OURS), wildcard=True)[0]
    allowed, reason = decide(issue(OURS), issuewild("other-ca.test"), wildcard=True)
    assert not allowed and '0 issuewild "other-ca.test"' in reason


def test_wildcard_without_issuewild_uses_issue() -> None:
    assert decide(issue(OURS), wildcard=True)[0]
    assert not decide(issue(";"), wildcard=True)[0]


def test_only_unrelated_properties_allow() -> None:
    assert decide(CaaRecord(0, "iodef", "mailto:x@example.test"))[0]
    assert decide(CaaRecord(0, "futuretag", "anything"), CaaRecord(128, "iodef", "x"))[0]


@pytest.mark.parametrize("flags", [128, 1, 129, 255])
def test_critical_unknown_tag_refuses_even_when_issue_names_us(flags: int) -> None:
    allowed, reason = decide(issue(OURS), CaaRecord(flags, "futuretag", "x"))
    assert not allowed
    assert f'unknown critical property: {flags} futuretag "x"' in reason


def test_non_critical_unknown_tag_is_ignored() -> None:
    assert decide(issue(OURS), CaaRecord(0, "futuretag", "x"))[0]
    assert decide(issue(OURS), CaaRecord(64, "futuretag", "x"))[0]  # only 128 (and 1) count


def test_tags_compare_case_insensitively() -> None:
    assert decide(CaaRecord(0, "ISSUE", OURS))[0]
    assert not decide(CaaRecord(0, "Issue", "other-ca.test"))[0]


def test_accounturi() -> None:
    assert decide(issue(f"{OURS}; accounturi={ACCOUNT}"))[0]
    assert decide(issue(f"{OURS};accounturi = {ACCOUNT} ; other=1"))[0]
    allowed, reason = decide(issue(f"{OURS}; accounturi={ACCOUNT}x"))
    assert not allowed and "accounturi is not this account" in reason
    allowed, reason = decide(issue(f"{OURS}; accounturi={ACCOUNT}; accounturi={ACCOUNT}"))
    assert not allowed and "more than one accounturi" in reason
    # Another record for this account still allows.
    assert decide(issue(f"{OURS}; accounturi={ACCOUNT}x"), issue(f"{OURS}; accounturi={ACCOUNT}"))[
        0
    ]


def test_validationmethods() -> None:
    assert decide(issue(f"{OURS}; validationmethods=dns-01"), method="dns-01")[0]
    assert decide(issue(f"{OURS}; validationmethods=http-01,dns-01"), method="http-01")[0]
    assert decide(issue(f"{OURS}; validationmethods=dns-01,future-method"))[0]
    allowed, reason = decide(issue(f"{OURS}; validationmethods=dns-01"), method="http-01")
    assert not allowed and "validationmethods does not include http-01" in reason
    allowed, _ = decide(issue(f"{OURS}; validationmethods=dns-01,,http-01"), method="http-01")
    assert not allowed  # an empty label is malformed
    allowed, reason = decide(
        issue(f"{OURS}; validationmethods=dns-01; validationmethods=http-01"), method="dns-01"
    )
    assert not allowed and "more than one validationmethods" in reason


def test_accounturi_and_validationmethods_together() -> None:
    value = f"{OURS}; accounturi={ACCOUNT}; validationmethods=http-01"
    assert decide(issue(value), method="http-01")[0]
    assert not decide(issue(value), method="dns-01")[0]
    assert not decide(issue(value), method="http-01", account=ACCOUNT + "0")[0]


def test_parse_issue_value() -> None:
    parsed = parse_issue_value(" Ca.Example.Test ; a=1;b-c = x=y ")
    assert parsed.issuer == "ca.example.test"
    assert parsed.parameters == (("a", "1"), ("b-c", "x=y"))
    assert parse_issue_value(";").issuer == ""
    with pytest.raises(CaaSyntaxError):
        parse_issue_value("ca.test; =1")
    with pytest.raises(CaaSyntaxError):
        parse_issue_value("ca..test")


def test_normalize_identity() -> None:
    assert normalize_identity(" CA.Example.Test. ") == "ca.example.test"
    for bad in ("", "a b", "-x.test", "x_y.test"):
        with pytest.raises(ValueError):
            normalize_identity(bad)


# -- properties over many record forms ---------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)
_tag = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True).filter(
    lambda t: (
        t not in ("issue", "issuewild", "iodef", "issuemail", "issuevmc")
        and not t.startswith("contact")
    )
)
_record = st.builds(
    CaaRecord,
    st.integers(0, 255),
    st.sampled_from(["issue", "issuewild", "iodef"]) | _tag,
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40) | _domain,
)


@given(st.lists(_record, max_size=6), st.booleans())
def test_never_crashes_and_always_explains(records: list[CaaRecord], wildcard: bool) -> None:
    allowed, reason = decide(*records, wildcard=wildcard)
    assert reason
    if not allowed:
        assert "example.test" in reason


@given(st.lists(_record, max_size=6), st.booleans())
def test_a_critical_unknown_tag_always_refuses(records: list[CaaRecord], wildcard: bool) -> None:
    records = [*records, issue(OURS), issuewild(OURS), CaaRecord(128, "zzunknown", "v")]
    assert not decide(*records, wildcard=wildcard)[0]


@given(st.lists(_record, max_size=6), _domain, st.booleans())
def test_records_naming_only_others_refuse(
    records: list[CaaRecord], other: str, wildcard: bool
) -> None:
    """With an issue record for another CA and nothing relevant naming us, never allowed."""
    ours = {OURS, "other-name-of-ours.test"}
    kept = [
        r
        for r in records
        if r.tag in ("issue", "issuewild") and r.value.split(";")[0].strip().lower() not in ours
    ]
    if other in ours:
        return
    assert not decide(*kept, issue(other), issuewild(other), wildcard=wildcard)[0]


@given(_domain, st.booleans())
def test_our_plain_record_always_allows(extra: str, wildcard: bool) -> None:
    assert decide(issue(extra), issue(OURS), issuewild(OURS), wildcard=wildcard)[0]


# -- which authorizations finalize re-checks (validation/caa_recheck.py) --------------------


def test_stale_authorizations_are_the_unchecked_and_the_old() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    window = timedelta(hours=8)

    def authz(authz_id: str, checked: datetime | None) -> Authorization:
        return Authorization(
            authz_id, "acct", "x.test", False, AuthorizationStatus.VALID, now, (), checked
        )

    authzs = [
        authz("never", None),
        authz("old", now - window - timedelta(seconds=1)),
        authz("edge", now - window),
        authz("fresh", now - window + timedelta(seconds=1)),
        authz("now", now),
    ]
    assert stale(authzs, now, window) == ["never", "old", "edge"]
