"""dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<name>` holding the digest.

Looked up through the configured resolver with no cache, so each retry sees fresh data.
A missing record is reported as transient (it may still be propagating); a record with
the wrong value is final. dns-01 connects to nothing it learns from DNS (CNAME targets are
only queried through the admin-chosen resolvers), so the address policy has nothing to
check here; what the records say is never echoed to the client.
"""

from __future__ import annotations

import hashlib

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from acme_server.domain.problems import ProblemType
from acme_server.encoding import b64url_encode
from acme_server.validation.errors import ValidationError
from acme_server.validation.resolver import dns_problem

MAX_CNAME_HOPS = 8


def dns01_txt_value(key_authorization: str) -> str:
    """base64url(SHA-256(key authorization)) without padding: the TXT record's content."""
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    return b64url_encode(digest)


def challenge_name(name: str) -> str:
    """`_acme-challenge.<name>`, with a wildcard's `*.` removed (RFC 8555 §8.4)."""
    base = name[2:] if name.startswith("*.") else name
    return f"_acme-challenge.{base.rstrip('.')}"


async def validate_dns01(
    name: str, key_authorization: str, *, resolver: dns.asyncresolver.Resolver
) -> None:
    """Succeed when any TXT record at the challenge name equals the expected value."""
    qname = challenge_name(name)
    expected = dns01_txt_value(key_authorization)
    values = await _txt_values(resolver, qname)
    if expected in values:
        return
    if not values:
        raise ValidationError(
            ProblemType.UNAUTHORIZED, f"No TXT record found at {qname}", transient=True
        )
    # The values are not repeated: a CNAME may lead the (cluster) resolver to records an
    # ACME client must not be able to read through us.
    found = f"{len(values)} other TXT record{'s' if len(values) > 1 else ''}"
    raise ValidationError(
        ProblemType.UNAUTHORIZED,
        f'Incorrect TXT record at {qname}: expected "{expected}", found {found}',
    )


async def _txt_values(resolver: dns.asyncresolver.Resolver, qname: str) -> list[str]:
    """Joined strings of every TXT record at `qname`, chasing CNAMEs the server left open.

    dnspython follows a CNAME chain inside one response; an authoritative-only server
    answers a CNAME to another zone without the target's data, so that chain is
    continued here with a new query, a bounded number of times.
    """
    current = dns.name.from_text(qname)
    for _ in range(MAX_CNAME_HOPS):
        try:
            answer = await resolver.resolve(
                current, dns.rdatatype.TXT, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise dns_problem(exc, "TXT", qname) from None
        if answer.rrset is not None:
            return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset]
        if answer.canonical_name == current:
            return []
        current = answer.canonical_name
    raise ValidationError(
        ProblemType.DNS,
        f"DNS problem: too many CNAMEs (more than {MAX_CNAME_HOPS}) looking up TXT for {qname}",
    )
