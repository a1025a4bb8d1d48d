"""CAA lookup (RFC 8659 §3) and the check the server runs before issuing for a name.

The relevant RRset is the first non-empty CAA RRset climbing from the name toward, but not
including, the root. Each name on the way is asked for CAA through the configured
resolvers (no cache); a CNAME there is followed as any DNS resolution would, but the climb
continues from the original name's parent, not the target's (RFC 8659 §3, unlike RFC
6844). All names are asked at once (as Boulder does), within one timeout.

A lookup that fails (SERVFAIL, REFUSED, timeout) before a non-empty RRset was found refuses
issuance: the records it hid might forbid it. NXDOMAIN and NODATA mean "nothing here".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from acme_server.domain.caa import CaaRecord, evaluate
from acme_server.domain.problems import ProblemType
from acme_server.validation.errors import ValidationError
from acme_server.validation.resolver import dns_problem

MAX_CNAME_HOPS = 8


class CaaChecker:
    """Checks names against CAA for our issuer domain names (`--caa-identity`)."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        identities: Sequence[str],
        *,
        account_uri: Callable[[str], str],
        timeout: float,
    ) -> None:
        self._resolver = resolver
        self._identities = tuple(identities)
        self._account_uri = account_uri  # account id -> its URL, as RFC 8657 accounturi has it
        self._timeout = timeout

    @property
    def identities(self) -> tuple[str, ...]:
        return self._identities

    async def check(self, name: str, *, wildcard: bool, account_id: str, method: str) -> None:
        """Return when CAA lets us issue for `name` (`*.name` when `wildcard`) to the account
        whose authorization `method` validated; else raise a ValidationError: `caa` when a
        record forbids it, `dns` when a lookup failed."""
        shown = f"*.{name}" if wildcard else name
        try:
            async with asyncio.timeout(self._timeout):
                found_at, records = await relevant_rrset(self._resolver, name)
        except TimeoutError:
            raise ValidationError(
                ProblemType.DNS,
                f"While processing CAA for {shown}: DNS problem: query timed out looking up "
                f"CAA for {name}",
                transient=True,
            ) from None
        except ValidationError as exc:
            raise ValidationError(
                exc.problem_type,
                f"While processing CAA for {shown}: {exc.detail}",
                transient=exc.transient,
            ) from None
        decision = evaluate(
            records,
            found_at=found_at,
            wildcard=wildcard,
            identities=self._identities,
            account_uri=self._account_uri(account_id),
            method=method,
        )
        if not decision.allowed:
            raise ValidationError(ProblemType.CAA, decision.reason)


async def relevant_rrset(
    resolver: dns.asyncresolver.Resolver, name: str
) -> tuple[str, list[CaaRecord]]:
    """(owner name, records) of the relevant RRset of `name`; ("", []) when there is none."""
    labels = name.rstrip(".").lower().split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels))]
    results = await asyncio.gather(
        *(_caa_at(resolver, candidate) for candidate in candidates), return_exceptions=True
    )
    for candidate, result in zip(candidates, results, strict=True):
        if isinstance(result, BaseException):
            raise result  # a failure below the first RRset could hide records
        if result:
            return candidate, result
    return "", []


async def _caa_at(resolver: dns.asyncresolver.Resolver, name: str) -> list[CaaRecord]:
    """The CAA RRset at `name`, following CNAMEs the server's answer left unchased."""
    current = dns.name.from_text(name)
    for _ in range(MAX_CNAME_HOPS):
        try:
            answer = await resolver.resolve(
                current, dns.rdatatype.CAA, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise dns_problem(exc, "CAA", name) from None
        if answer.rrset is not None:
            return [
                CaaRecord(
                    rdata.flags,
                    rdata.tag.decode("ascii", "replace"),
                    rdata.value.decode("utf-8", "replace"),
                )
                for rdata in answer.rrset
            ]
        if answer.canonical_name == current:
            return []
        current = answer.canonical_name
    raise ValidationError(
        ProblemType.DNS,
        f"DNS problem: too many CNAMEs (more than {MAX_CNAME_HOPS}) looking up CAA for {name}",
    )
