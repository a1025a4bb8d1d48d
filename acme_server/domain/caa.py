"""CAA policy (RFC 8659 §4, RFC 8657): does a relevant CAA RRset let us issue for a name?

Pure: the record set, the name's kind (wildcard or not), our issuer domain names, the
account URL and the validation method go in; a `Decision` with a reason comes out. The DNS
side (finding the relevant RRset) is `acme_server/validation/caa_lookup.py`.

Where the RFCs leave room, this follows Boulder (`va/caa.go`), the CA most clients meet:
the flag bit 1 counts as critical like bit 128 (a widespread misreading of RFC 6844), a
record with two `accounturi` or two `validationmethods` parameters is unsatisfiable, and a
record whose value does not parse authorizes nobody.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CRITICAL_FLAGS = 128 | 1
# Tags we understand (so a critical one does not block issuance) but that say nothing about
# TLS server certificates: iodef (reports, which we do not send), S/MIME and VMC issuance.
_UNUSED_KNOWN = frozenset({"iodef", "issuemail", "issuevmc", "contactemail", "contactphone"})
_WSP = " \t"
_LABEL = re.compile(r"^[A-Za-z0-9](?:-*[A-Za-z0-9])*$")  # RFC 8659 label and parameter tag
_VALUE = re.compile(r"^[\x21-\x3a\x3c-\x7e]*$")  # parameter value: no WSP, no ";"
_METHOD = re.compile(r"^[A-Za-z0-9-]+$")  # RFC 8657 §4 validationmethods label


@dataclass(frozen=True)
class CaaRecord:
    """One CAA resource record: flags octet, property tag and value (RFC 8659 §4.1)."""

    flags: int
    tag: str
    value: str

    def __str__(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


@dataclass(frozen=True)
class Decision:
    """`allowed`, and why: shown to the ACME client when issuance is refused."""

    allowed: bool
    reason: str


class CaaSyntaxError(ValueError):
    """An issue/issuewild value that does not follow the RFC 8659 §4.2 grammar."""


@dataclass(frozen=True)
class IssueValue:
    """A parsed issue/issuewild value; `issuer` is "" when the record names nobody."""

    issuer: str
    parameters: tuple[tuple[str, str], ...]

    def all(self, tag: str) -> list[str]:
        """Values of every parameter named `tag` (tags compare case-insensitively)."""
        return [v for t, v in self.parameters if t.lower() == tag]


def parse_issue_value(value: str) -> IssueValue:
    """Parse `[issuer-domain-name] [";" parameters]` (RFC 8659 §4.2)."""
    head, _, rest = value.partition(";")
    issuer = head.strip(_WSP)
    if issuer and not all(_LABEL.match(label) for label in issuer.split(".")):
        raise CaaSyntaxError(f"issuer domain name {issuer!r} is malformed")
    parameters: list[tuple[str, str]] = []
    if rest.strip(_WSP):
        for part in rest.split(";"):
            tag, eq, val = part.partition("=")
            tag, val = tag.strip(_WSP), val.strip(_WSP)
            if not eq or not _LABEL.match(tag):
                raise CaaSyntaxError(f"parameter {part.strip(_WSP)!r} is not tag=value")
            if not _VALUE.match(val):
                raise CaaSyntaxError(f"parameter {tag} has a malformed value")
            parameters.append((tag, val))
    return IssueValue(issuer.lower(), tuple(parameters))


def normalize_identity(identity: str) -> str:
    """An issuer domain name as configured (`--caa-identity`), checked and lower-cased."""
    name = identity.strip().rstrip(".").lower()
    if not name or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"CAA identity {identity!r} is not a domain name")
    return name


def evaluate(
    records: Sequence[CaaRecord],
    *,
    found_at: str,
    wildcard: bool,
    identities: Iterable[str],
    account_uri: str,
    method: str,
) -> Decision:
    """Decide issuance for one name from its relevant RRset (found at `found_at`).

    An empty RRset (no CAA anywhere up the tree) allows issuance.
    """
    if not records:
        return Decision(True, "no CAA records")
    ours = {i.lower() for i in identities}
    issue: list[CaaRecord] = []
    issuewild: list[CaaRecord] = []
    for record in records:
        tag = record.tag.lower()
        if tag == "issue":
            issue.append(record)
        elif tag == "issuewild":
            issuewild.append(record)
        elif tag not in _UNUSED_KNOWN and record.flags & CRITICAL_FLAGS:
            return Decision(
                False, f"CAA record for {found_at} has an unknown critical property: {record}"
            )
    # RFC 8659 §4.3: issuewild, when present, replaces issue for wildcard names; it is
    # ignored for other names.
    relevant = issuewild if wildcard and issuewild else issue
    kind = "issuewild" if wildcard and issuewild else "issue"
    if not relevant:
        return Decision(True, f"CAA records for {found_at} have no {kind} property")
    reasons: list[str] = []
    for record in relevant:
        why = _refusal(record, ours, account_uri, method)
        if why is None:
            return Decision(True, f"CAA record for {found_at} allows issuance: {record}")
        reasons.append(f"{record} ({why})")
    return Decision(False, f"CAA record for {found_at} prevents issuance: {'; '.join(reasons)}")


def _refusal(record: CaaRecord, ours: set[str], account_uri: str, method: str) -> str | None:
    """Why this issue/issuewild record does not authorize us, or None when it does."""
    try:
        parsed = parse_issue_value(record.value)
    except CaaSyntaxError as exc:
        return f"malformed: {exc}"
    if not parsed.issuer:
        return "no CA may issue"
    if parsed.issuer not in ours:
        return "names another CA"
    uris = parsed.all("accounturi")
    if len(uris) > 1:
        return "more than one accounturi"
    if uris and uris[0] != account_uri:
        return "accounturi is not this account"
    methods = parsed.all("validationmethods")
    if len(methods) > 1:
        return "more than one validationmethods"
    if methods:
        listed = methods[0].split(",")
        if not all(_METHOD.match(m) for m in listed):
            return "validationmethods is malformed"
        if method not in listed:
            return f"validationmethods does not include {method}"
    return None
