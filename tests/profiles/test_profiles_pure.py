"""The profile decisions and the YAML loader, without a server (pure unit tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.domain.profiles import builtin_profiles, order_terms, select_profile
from acme_server.profile_config import ProfileConfigError, parse_profiles

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Grant:
    allowed_profiles: tuple[str, ...] | None = None
    default_profile: str | None = None


def _problem(exc: pytest.ExceptionInfo[AcmeProblem]) -> tuple[ProblemType, str]:
    return exc.value.type, exc.value.detail


def test_builtins_offer_default_and_shortlived_not_tlsclient() -> None:
    builtins = builtin_profiles(timedelta(days=90))
    assert set(builtins.meta()) == {"default", "shortlived"}
    assert builtins.profiles["shortlived"].validity == timedelta(days=7)
    assert not builtins.profiles["shortlived"].revocation_info
    assert builtins.profiles["default"].ekus == ("serverAuth",)
    with pytest.raises(AcmeProblem) as exc:
        select_profile(builtins, "tlsclient", Grant(("tlsclient",)))
    assert _problem(exc)[0] == ProblemType.INVALID_PROFILE


def test_selection_order_and_refusals() -> None:
    builtins = builtin_profiles()
    assert select_profile(builtins, None, None).name == "default"
    assert select_profile(builtins, None, Grant(None, "shortlived")).name == "shortlived"
    assert select_profile(builtins, "shortlived", Grant(("shortlived",))).name == "shortlived"
    with pytest.raises(AcmeProblem) as exc:
        select_profile(builtins, "nope", None)
    kind, detail = _problem(exc)
    assert kind == ProblemType.INVALID_PROFILE and "'nope' is not offered" in detail
    assert ProblemType.INVALID_PROFILE.status == 400
    with pytest.raises(AcmeProblem) as exc:
        select_profile(builtins, "shortlived", Grant(("default",)))
    kind, detail = _problem(exc)
    assert kind == ProblemType.INVALID_PROFILE
    assert "not allowed for this account's registration (allowed: default)" in detail
    with pytest.raises(AcmeProblem) as exc:
        select_profile(builtins, 7, None)
    assert _problem(exc)[0] == ProblemType.MALFORMED


def test_tlsclient_needs_an_explicit_grant_once_enabled() -> None:
    profiles = parse_profiles({"profiles": {"tlsclient": {"enabled": True}}}, builtin_profiles())
    assert "tlsclient" in profiles.meta()
    for grant in (None, Grant()):
        with pytest.raises(AcmeProblem) as exc:
            select_profile(profiles, "tlsclient", grant)
        assert "granted explicitly" in _problem(exc)[1]
    chosen = select_profile(profiles, "tlsclient", Grant(("default", "tlsclient")))
    assert chosen.client_auth and not chosen.server_auth


def _terms(payload: dict[str, object], names: int = 1) -> tuple[str, object, object]:
    profile, nb, na = order_terms(
        builtin_profiles(), payload, [f"n{i}.test" for i in range(names)], None, NOW
    )
    return profile.name, nb, na


def test_not_before_not_after_within_bounds() -> None:
    after = "2030-01-08T00:00:00Z"
    assert _terms({"profile": "shortlived", "notAfter": after}) == (
        "shortlived",
        None,
        NOW + timedelta(days=7),
    )
    assert _terms({"notBefore": "2030-01-02T00:00:00+00:00", "notAfter": "2030-02-01T00:00:00Z"})[
        1:
    ] == (NOW + timedelta(days=1), NOW + timedelta(days=31))


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"profile": "shortlived", "notAfter": "2030-01-09T00:00:00Z"}, "allows 1 hours to 7 days"),
        ({"notAfter": "2030-01-01T00:10:00Z"}, "lifetime of 0.166667 hours"),
        ({"notBefore": "2029-12-01T00:00:00Z"}, "lies in the past"),
        ({"notBefore": "2031-01-01T00:00:00Z"}, "too far in the future"),
        ({"notAfter": "2030-01-08"}, "RFC 3339"),
        ({"notAfter": "2030-01-08T00:00:00"}, "time zone"),
        ({"notAfter": 5}, "RFC 3339"),
        ({"notAfter": "0001-01-01T00:00:00+01:00"}, "RFC 3339"),
        (
            {"notBefore": "2030-01-03T00:00:00Z", "notAfter": "2030-01-02T00:00:00Z"},
            "later than notBefore",
        ),
    ],
)
def test_out_of_bounds_is_malformed(payload: dict[str, object], detail: str) -> None:
    with pytest.raises(AcmeProblem) as exc:
        _terms(payload)
    kind, text = _problem(exc)
    assert kind == ProblemType.MALFORMED and detail in text


def test_max_names() -> None:
    profiles = parse_profiles({"profiles": {"default": {"max_names": 2}}}, builtin_profiles())
    with pytest.raises(AcmeProblem) as exc:
        order_terms(profiles, {}, ["a.test", "b.test", "c.test"], None, NOW)
    assert _problem(exc) == (
        ProblemType.REJECTED_IDENTIFIER,
        "profile 'default' allows at most 2 identifiers, the order has 3",
    )


def test_config_file_shapes() -> None:
    doc = {
        "default": "internal",
        "profiles": {
            "internal": {
                "description": "internal services",
                "validity": "30d",
                "key_types": ["ecdsa"],
                "common_name": False,
            },
            "shortlived": {"validity": "3d"},
        },
    }
    profiles = parse_profiles(doc, builtin_profiles())
    assert profiles.default == "internal"
    internal = profiles.profiles["internal"]
    assert internal.validity == timedelta(days=30) and internal.key_types == ("ecdsa",)
    assert not internal.common_name
    assert profiles.profiles["shortlived"].validity == timedelta(days=3)
    assert not profiles.profiles["shortlived"].revocation_info  # the built-in's value stays


@pytest.mark.parametrize(
    ("doc", "detail"),
    [
        ({"profiles": {"x": {}}}, "a new profile needs 'validity'"),
        ({"profiles": {"default": {"validty": "1d"}}}, "unknown keys ['validty']"),
        ({"profiles": {"default": {"ekus": ["codeSigning"]}}}, "ekus must be"),
        ({"profiles": {"default": {"validity": "soon"}}}, "invalid duration"),
        ({"profiles": {"default": {"min_validity": "100d"}}}, "min_validity is longer"),
        ({"default": "tlsclient"}, "not an enabled profile"),
        ({"profiles": {"default": {"max_names": 0}}}, "max_names"),
        ({"profile": {}}, "expected a mapping"),
    ],
)
def test_config_mistakes_name_the_profile_and_key(doc: object, detail: str) -> None:
    with pytest.raises(ProfileConfigError, match=None) as exc:
        parse_profiles(doc, builtin_profiles())
    assert detail in str(exc.value)


def test_operator_maps_spec_profiles() -> None:
    from acme_operator.reconcile import profiles

    assert profiles({}) == (None, None)
    assert profiles({"profiles": ["default", "shortlived"], "defaultProfile": "default"}) == (
        ("default", "shortlived"),
        "default",
    )
    assert profiles({"profiles": []}) == ((), None)  # an empty list allows nothing
