"""Which DNS identifiers are well-formed, and which an order may request.

No grant, no names: a name is allowed only by an explicit "any name" grant, or when it
equals a listed name or (unless that entry excludes subdomains) is a subdomain of it,
compared on whole DNS labels, case-insensitively, after IDNA (A-label) conversion. An empty
list allows nothing. `*.x` names subdomains of x, so it needs ONE rule that both includes
subdomains and allows wildcards and covers x.

`parse_identifiers`, `check_allowed` and `check_issuable` turn these rules into the ACME
problems (`malformed`, `rejectedIdentifier`, `unsupportedIdentifier`) newOrder and finalize
return, one subproblem per refused identifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import idna

from acme_server.domain.problems import AcmeProblem, ProblemType, identifier_subproblem

MAX_IDENTIFIERS = 100

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class IdentifierError(ValueError):
    """A DNS identifier that no certificate can carry; the message says why."""


@dataclass(frozen=True)
class DomainRule:
    domain: str
    include_subdomains: bool = True
    allow_wildcard: bool = True


def normalise_dns_name(value: str, *, allow_wildcard: bool = True) -> str:
    """Lower-cased A-label form of `value`, validated; a single leading `*.` is kept."""
    if not isinstance(value, str) or not value:
        raise IdentifierError("identifier value must be a non-empty string")
    name = value.strip()
    if name != value:
        raise IdentifierError(f"{value!r} contains whitespace")
    if name.endswith("."):
        raise IdentifierError(f"{value!r} must not end with a dot")
    wildcard = name.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise IdentifierError(f"{value!r}: wildcards are not allowed here")
        name = name[2:]
    if "*" in name:
        raise IdentifierError(f"{value!r}: only a single leading '*.' label may be a wildcard")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise IdentifierError(f"{value!r} is not a valid DNS name: {exc}") from None
    if len(ascii_name) > 253:
        raise IdentifierError(f"{value!r} is longer than 253 characters")
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise IdentifierError(f"{value!r} must have at least two labels")
    for label in labels:
        if not _LABEL.match(label):
            raise IdentifierError(f"{value!r} has an invalid label {label!r}")
    if labels[-1].isdigit() or _looks_like_ip(ascii_name):
        raise IdentifierError(f"{value!r} is an IP address, not a DNS name")
    return ("*." if wildcard else "") + ascii_name


def _looks_like_ip(name: str) -> bool:
    return all(part.isdigit() for part in name.split("."))


def _covers(rule: DomainRule, base: str) -> bool:
    if base == rule.domain:
        return True
    return rule.include_subdomains and base.endswith("." + rule.domain)


def is_allowed(name: str, rules: Iterable[DomainRule], *, any_domain: bool = False) -> bool:
    """`name` is normalised (see normalise_dns_name); without `any_domain`, no rules = no names."""
    if any_domain:
        return True
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    for rule in rules:
        if wildcard:
            # `*.x` covers names below x: the rule must allow wildcards AND subdomains.
            if rule.allow_wildcard and rule.include_subdomains and _covers(rule, base):
                return True
        elif _covers(rule, base):
            return True
    return False


class Grant(Protocol):
    """What the allow-list check needs of a pre-registration (the store's `Registration`)."""

    @property
    def name(self) -> str: ...
    @property
    def kid(self) -> str: ...
    @property
    def any_domain(self) -> bool: ...
    @property
    def domains(self) -> Sequence[DomainRule]: ...
    @property
    def grants_nothing(self) -> bool: ...


def parse_identifiers(payload: dict[str, Any]) -> list[str]:
    """Normalised, de-duplicated names; every bad identifier is reported at once."""
    raw = payload.get("identifiers")
    if not isinstance(raw, list) or not raw:
        raise AcmeProblem(ProblemType.MALFORMED, "identifiers must be a non-empty list")
    if len(raw) > MAX_IDENTIFIERS:
        raise AcmeProblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"an order may have at most {MAX_IDENTIFIERS} identifiers",
        )
    names: list[str] = []
    problems: list[dict[str, Any]] = []
    rejected = False
    for ident in raw:
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            raise AcmeProblem(
                ProblemType.MALFORMED, "each identifier must be an object with type and value"
            )
        if ident.get("type") != "dns":
            problems.append(
                identifier_subproblem(
                    ProblemType.UNSUPPORTED_IDENTIFIER,
                    ident["value"],
                    f"identifier type {ident.get('type')!r} is not supported; only dns",
                )
            )
            continue
        try:
            name = normalise_dns_name(ident["value"])
        except IdentifierError as exc:
            problems.append(
                identifier_subproblem(ProblemType.REJECTED_IDENTIFIER, ident["value"], str(exc))
            )
            rejected = True
            continue
        if name not in names:
            names.append(name)
    if problems:
        raise AcmeProblem(
            ProblemType.REJECTED_IDENTIFIER if rejected else ProblemType.UNSUPPORTED_IDENTIFIER,
            f"{len(problems)} identifier(s) cannot be issued: "
            + "; ".join(p["detail"] for p in problems),
            subproblems=problems,
        )
    return names


def check_allowed(names: list[str], grant: Grant | None) -> None:
    """Refuse names the pre-registration does not grant, one subproblem each.

    Open mode (no registration) allows every well-formed name; a registration grants its
    listed domains, or every name only with its explicit any_domain grant.
    """
    if grant is None or grant.any_domain:
        return
    rejected = ProblemType.REJECTED_IDENTIFIER
    if grant.grants_nothing:
        detail = f"no domain was granted to pre-registration {grant.name!r}"
        raise AcmeProblem(
            rejected,
            f"{', '.join(names)} not allowed: {detail}",
            subproblems=[
                identifier_subproblem(rejected, n, f"{n} is not allowed: {detail}") for n in names
            ],
        )
    refused = [n for n in names if not is_allowed(n, grant.domains)]
    if refused:
        allowed = ", ".join(_describe(d) for d in grant.domains)
        raise AcmeProblem(
            rejected,
            f"{', '.join(refused)} not allowed for pre-registration {grant.kid!r} "
            f"(allowed domains: {allowed})",
            subproblems=[
                identifier_subproblem(
                    rejected,
                    n,
                    f"{n} is not within the allowed domains of pre-registration {grant.kid!r}",
                )
                for n in refused
            ],
        )


def check_issuable(names: list[str], permits: Callable[[str], bool]) -> None:
    """Refuse names outside the CA's X.509 name constraints (`permits`) up front: a leaf
    for them would be signed, then rejected by every verifier."""
    refused = [n for n in names if not permits(n)]
    if refused:
        detail = "outside the name constraints of this CA"
        rejected = ProblemType.REJECTED_IDENTIFIER
        raise AcmeProblem(
            rejected,
            f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} {detail}",
            subproblems=[identifier_subproblem(rejected, n, f"{n} is {detail}") for n in refused],
        )


def _describe(rule: DomainRule) -> str:
    """How a rule reads in a refusal: `example.com`, `*.example.com` or `example.com (exact)`."""
    if not rule.include_subdomains:
        return f"{rule.domain} (exact)"
    return rule.domain if rule.allow_wildcard else f"{rule.domain} (no wildcard)"
