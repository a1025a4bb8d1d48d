"""dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<name>` holding the digest.

Looked up through the configured resolvers with no cache, so each retry sees fresh data.
What real networks do is accepted: the challenge name delegated by CNAME to another zone
(chased here when an authoritative-only server leaves the chain open), several TXT values
at one name (wildcard + apex of one order; any match wins), a value split into several
strings (joined), names in any case. A missing or different record may still be
propagating, so it is transient: the scheduler retries it for `--dns01-retry-seconds`
(`retry_delay`) instead of holding a slot while waiting. With several resolvers
(perspectives) each is asked concurrently and `quorum` of them must find the value.

dns-01 connects to nothing it learns from DNS (CNAME targets are only queried through the
admin-chosen resolvers), so the address policy has nothing to check here; what the records
say is never echoed to the client, nor which resolvers were asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from acme_server.domain.problems import ProblemType
from acme_server.encoding import b64url_encode
from acme_server.validation.errors import ValidationError
from acme_server.validation.resolver import Perspectives, dns_problem

log = logging.getLogger("acme_server.validation")

MAX_CNAME_HOPS = 8
MAX_RETRY_STEP = 30.0  # seconds between two attempts at most, however long the budget


def dns01_txt_value(key_authorization: str) -> str:
    """base64url(SHA-256(key authorization)) without padding: the TXT record's content."""
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    return b64url_encode(digest)


def challenge_name(name: str) -> str:
    """`_acme-challenge.<name>`, with a wildcard's `*.` removed (RFC 8555 §8.4)."""
    base = name[2:] if name.startswith("*.") else name
    return f"_acme-challenge.{base.rstrip('.')}"


def retry_delay(failed_attempts: int, budget: float) -> float | None:
    """Seconds until the next attempt after `failed_attempts` transient failures, or None
    when `budget` seconds of retrying are used up (the failure is then final).

    Attempts are planned at 0, 1, 3, 7, 15 ... s (steps doubling up to MAX_RETRY_STEP), the
    last one exactly at `budget`: for 10 s that is 0, 1, 3, 7 and 10 s, five attempts. The
    plan counts attempts, not wall time, so a restart in between costs no retries.
    """
    at, step = 0.0, 1.0
    for _ in range(failed_attempts - 1):
        at = min(at + step, budget)
        step = min(step * 2, MAX_RETRY_STEP)
    if at >= budget:
        return None
    return min(at + step, budget) - at


async def validate_dns01(
    name: str,
    key_authorization: str,
    *,
    resolver: dns.asyncresolver.Resolver | Perspectives,
) -> None:
    """Succeed when, at `quorum` of the resolvers, a TXT record at the challenge name
    equals the expected value.

    The resolvers are asked concurrently; once `quorum` found it the others are not waited
    for (a dead perspective does not delay a valid one), otherwise all are awaited so the
    problem can say how many agreed.
    """
    perspectives = resolver if isinstance(resolver, Perspectives) else Perspectives.single(resolver)
    qname = challenge_name(name)
    expected = dns01_txt_value(key_authorization)
    tasks = [asyncio.ensure_future(_check(r, qname, expected)) for r in perspectives.resolvers]
    total, found = len(tasks), 0
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                await next_done
            except ValidationError:
                continue
            found += 1
            if found >= perspectives.quorum:
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    failures = [
        (index, exc)
        for index, task in enumerate(tasks, 1)
        if isinstance(exc := task.exception(), ValidationError)
    ]
    if total == 1:
        raise failures[0][1]
    for index, err in failures:
        where = ", ".join(str(ns) for ns in perspectives.resolvers[index - 1].nameservers)
        log.info("dns-01 %s: resolver %d of %d (%s): %s", qname, index, total, where, err.detail)
    index, first = failures[0]
    raise ValidationError(
        first.problem_type,
        f"{first.detail} (resolver {index} of {total}; {found} of {total} resolvers found "
        f"the expected TXT record, {perspectives.quorum} must)",
        transient=any(err.transient for _, err in failures),
    )


async def _check(resolver: dns.asyncresolver.Resolver, qname: str, expected: str) -> None:
    """One perspective: raise unless a TXT value at `qname` (after CNAMEs) is `expected`."""
    try:
        async with asyncio.timeout(resolver.lifetime):  # the whole CNAME chain, not one query
            values = await _txt_values(resolver, qname)
    except TimeoutError:
        raise dns_problem(dns.exception.Timeout(), "TXT", qname) from None
    if expected in values:
        return
    if not values:
        raise ValidationError(
            ProblemType.UNAUTHORIZED, f"No TXT record found at {qname}", transient=True
        )
    # The values are not repeated: a CNAME may lead the (cluster) resolver to records an
    # ACME client must not be able to read through us. A different value may be an old
    # one still being replaced, so it is retried like a missing one.
    found = f"{len(values)} other TXT record{'s' if len(values) > 1 else ''}"
    raise ValidationError(
        ProblemType.UNAUTHORIZED,
        f'Incorrect TXT record at {qname}: expected "{expected}", found {found}',
        transient=True,
    )


async def _txt_values(resolver: dns.asyncresolver.Resolver, qname: str) -> list[str]:
    """Joined strings of every TXT record at `qname`, chasing CNAMEs the server left open.

    dnspython follows a CNAME chain inside one response; an authoritative-only server
    answers a CNAME to another zone without the target's data, so that chain is
    continued here with a new query, a bounded number of times, stopping at a loop.
    """
    current = dns.name.from_text(qname)
    seen = {current}
    for _ in range(MAX_CNAME_HOPS):
        try:
            answer = await resolver.resolve(
                current, dns.rdatatype.TXT, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.message.ChainTooLong:
            raise _cname_problem(f"CNAME chain too long or looping at {current}", qname) from None
        except dns.exception.DNSException as exc:
            raise dns_problem(exc, "TXT", qname) from None
        if answer.rrset is not None:
            return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset]
        target = answer.canonical_name
        if target == current:
            return []
        if target in seen:
            raise _cname_problem(f"CNAME loop at {target.to_text(omit_final_dot=True)}", qname)
        seen.add(target)
        current = target
    raise _cname_problem(f"too many CNAMEs (more than {MAX_CNAME_HOPS})", qname)


def _cname_problem(what: str, qname: str) -> ValidationError:
    """A broken delegation is the domain's fault and will not heal by itself: final."""
    return ValidationError(ProblemType.DNS, f"DNS problem: {what} looking up TXT for {qname}")
