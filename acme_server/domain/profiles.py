"""Certificate profiles (draft-ietf-acme-profiles): what a leaf looks like and who may ask.

Pure decisions: which profile an order gets, whether its notBefore/notAfter fit, whether
the CSR's key type and the number of names are allowed. The YAML loader is
`acme_server/profile_config.py`; the X.509 side is `acme_server/ca/profile.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from acme_server.domain.problems import AcmeProblem, ProblemType

KEY_TYPES = ("rsa", "ecdsa", "ed25519")
EKUS = ("serverAuth", "clientAuth")
DEFAULT_PROFILE = "default"
# A requested notBefore may lie this far in the past (clients' clocks drift).
NOT_BEFORE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class Profile:
    """One certificate profile as configured on the server."""

    name: str
    description: str
    validity: timedelta  # default lifetime, and the longest one notBefore/notAfter may ask
    min_validity: timedelta = timedelta(hours=1)  # the shortest lifetime notAfter may ask
    ekus: tuple[str, ...] = ("serverAuth",)
    key_types: tuple[str, ...] = KEY_TYPES
    max_names: int = 100
    common_name: bool = True  # first name as subject CN (when it fits), else empty subject
    revocation_info: bool = True  # CRL distribution point and AIA (when configured)
    # Only registrations that list this profile may use it (never open accounts).
    explicit_grant: bool = False
    # Not offered at all (not in the directory, refused in newOrder).
    enabled: bool = True

    @property
    def server_auth(self) -> bool:
        return "serverAuth" in self.ekus

    @property
    def client_auth(self) -> bool:
        return "clientAuth" in self.ekus


@dataclass(frozen=True)
class ProfileSet:
    """The server's profiles and the one an order without `profile` gets."""

    profiles: Mapping[str, Profile] = field(default_factory=dict)
    default: str = DEFAULT_PROFILE

    def offered(self) -> dict[str, Profile]:
        return {n: p for n, p in self.profiles.items() if p.enabled}

    def meta(self) -> dict[str, str]:
        """The directory's `meta.profiles`: name -> description."""
        return {n: p.description for n, p in self.offered().items()}


class ProfileGrant(Protocol):
    """What a pre-registration says about profiles (store's Registration satisfies it)."""

    @property
    def allowed_profiles(self) -> tuple[str, ...] | None: ...

    @property
    def default_profile(self) -> str | None: ...


def builtin_profiles(default_validity: timedelta = timedelta(days=90)) -> ProfileSet:
    """`default` (serverAuth, `--cert-validity`), `shortlived` (7 days, no revocation
    pointers: it expires before revocation would matter) and `tlsclient` (disabled)."""
    profiles = {
        "default": Profile(
            "default", "TLS server certificate (serverAuth)", validity=default_validity
        ),
        "shortlived": Profile(
            "shortlived",
            "TLS server certificate valid 7 days, without CRL/OCSP pointers",
            validity=timedelta(days=7),
            revocation_info=False,
        ),
        "tlsclient": Profile(
            "tlsclient",
            "TLS client certificate (clientAuth), only for registrations granted it",
            validity=default_validity,
            ekus=("clientAuth",),
            explicit_grant=True,
            enabled=False,
        ),
    }
    return ProfileSet(profiles, DEFAULT_PROFILE)


def _invalid(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.INVALID_PROFILE, detail)


def select_profile(profiles: ProfileSet, requested: object, grant: ProfileGrant | None) -> Profile:
    """The profile an order gets: the requested one, else the registration's default, else
    the server's; `invalidProfile` when unknown or not allowed to this registration."""
    if requested is not None and (not isinstance(requested, str) or not requested):
        raise AcmeProblem(ProblemType.MALFORMED, "profile must be a non-empty string")
    name = requested or (grant.default_profile if grant else None) or profiles.default
    offered = profiles.offered()
    profile = offered.get(name)
    if profile is None:
        names = ", ".join(sorted(offered)) or "none"
        raise _invalid(f"profile {name!r} is not offered by this server (offered: {names})")
    allowed = grant.allowed_profiles if grant else None
    if allowed is not None and name not in allowed:
        listed = ", ".join(allowed) or "none"
        raise _invalid(
            f"profile {name!r} is not allowed for this account's registration "
            f"(allowed: {listed}); ask the registration's owner to add it"
        )
    if profile.explicit_grant and (allowed is None or name not in allowed):
        raise _invalid(
            f"profile {name!r} must be granted explicitly: its registration has to list it "
            "in its profiles"
        )
    return profile


def check_names(profile: Profile, names: Sequence[str]) -> None:
    if len(names) > profile.max_names:
        raise AcmeProblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"profile {profile.name!r} allows at most {profile.max_names} identifiers, "
            f"the order has {len(names)}",
        )


def check_validity(
    profile: Profile, not_before: datetime | None, not_after: datetime | None, now: datetime
) -> None:
    """RFC 8555 7.4: notBefore/notAfter within the profile's bounds, else `malformed`."""
    start = not_before or now
    if not_before is not None:
        if not_before < now - NOT_BEFORE_SLACK:
            raise AcmeProblem(
                ProblemType.MALFORMED,
                f"notBefore {not_before.isoformat()} lies in the past; backdating is not offered",
            )
        if not_before > now + profile.validity:
            raise AcmeProblem(
                ProblemType.MALFORMED,
                f"notBefore {not_before.isoformat()} is too far in the future "
                f"(at most {_days(profile.validity)} ahead)",
            )
    if not_after is None:
        return
    lifetime = not_after - start
    if lifetime > profile.validity or lifetime < profile.min_validity:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"notAfter {not_after.isoformat()} gives a lifetime of {_days(lifetime)}; profile "
            f"{profile.name!r} allows {_days(profile.min_validity)} to {_days(profile.validity)}",
        )


def parse_time(payload: Mapping[str, object], member: str) -> datetime | None:
    """newOrder's `notBefore`/`notAfter`: absent, null, or an RFC 3339 time with offset."""
    value = payload.get(member)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or "T" not in value.upper():
            raise ValueError
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"{member} must be an RFC 3339 date-time with a time zone, e.g. 2030-01-01T00:00:00Z",
        ) from None
    return parsed


def check_key_type(profile: Profile, key_type: str) -> None:
    if key_type not in profile.key_types:
        raise AcmeProblem(
            ProblemType.BAD_CSR,
            f"profile {profile.name!r} does not allow {key_type} keys "
            f"(allowed: {', '.join(profile.key_types)})",
        )


def _days(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"


def order_terms(
    profiles: ProfileSet,
    payload: Mapping[str, object],
    names: Sequence[str],
    grant: ProfileGrant | None,
    now: datetime,
) -> tuple[Profile, datetime | None, datetime | None]:
    """newOrder's profile and validity request, checked: (profile, notBefore, notAfter)."""
    profile = select_profile(profiles, payload.get("profile"), grant)
    check_names(profile, names)
    not_before = parse_time(payload, "notBefore")
    not_after = parse_time(payload, "notAfter")
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise AcmeProblem(ProblemType.MALFORMED, "notAfter must be later than notBefore")
    check_validity(profile, not_before, not_after, now)
    return profile, not_before, not_after
