"""CAA at finalize: names whose last CAA check is too old are checked again before signing.

CAA is checked when a challenge passes (validation/scheduler.py). An authorization lives
much longer than the Baseline Requirements let a CAA answer be relied on (8 hours), so, as
Boulder's RA does, finalize re-checks each authorization checked longer ago than
`--caa-recheck-after` (or never: validated before CAA checking was switched on), with the
method that validated it. Any refusal refuses the finalize; the order stays `ready`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from acme_server.domain.identifiers import IdentifierType
from acme_server.domain.problems import AcmeProblem, ProblemType, identifier_subproblem
from acme_server.store.orders import Authorization
from acme_server.validation.caa_lookup import CaaChecker
from acme_server.validation.errors import ValidationError


def stale(authzs: Sequence[Authorization], now: datetime, recheck_after: timedelta) -> list[str]:
    """Ids of the DNS-name authorizations whose CAA check is missing or older than
    `recheck_after` (CAA, RFC 8659, is defined for domain names only)."""
    return [
        a.id
        for a in authzs
        if a.identifier_type == IdentifierType.DNS
        and (a.caa_checked_at is None or a.caa_checked_at <= now - recheck_after)
    ]


async def recheck(
    checker: CaaChecker, authzs: Sequence[Authorization], now: datetime, recheck_after: timedelta
) -> list[str]:
    """Re-check CAA for the stale ones (at once); their ids, to record the new check time.

    Raises AcmeProblem: the failure's own type (`caa`, or `dns` when a lookup failed) for one
    name, `caa` with one subproblem per name for several.
    """
    due = set(stale(authzs, now, recheck_after))
    todo = [a for a in authzs if a.id in due]
    results = await asyncio.gather(*(_check(checker, a) for a in todo), return_exceptions=True)
    failures: list[tuple[Authorization, ValidationError]] = []
    for authz, result in zip(todo, results, strict=True):
        if isinstance(result, ValidationError):
            failures.append((authz, result))
        elif isinstance(result, BaseException):
            raise result
    if not failures:
        return [a.id for a in todo]
    subproblems = [
        identifier_subproblem(exc.problem_type, authz.identifier, f"rechecking CAA: {exc.detail}")
        for authz, exc in failures
    ]
    if len(failures) == 1:
        authz, exc = failures[0]
        raise AcmeProblem(
            exc.problem_type, f"rechecking CAA: {exc.detail}", subproblems=subproblems
        )
    raise AcmeProblem(
        ProblemType.CAA,
        f"rechecking CAA for {failures[0][0].identifier} and {len(failures) - 1} more "
        "identifiers failed; see the subproblems",
        subproblems=subproblems,
    )


async def _check(checker: CaaChecker, authz: Authorization) -> None:
    method = authz.validated_by
    if method is None:  # a valid authorization always has its valid challenge
        raise ValidationError(
            ProblemType.SERVER_INTERNAL, f"no validated challenge for {authz.identifier}"
        )
    await checker.check(
        authz.identifier_value, wildcard=authz.wildcard, account_id=authz.account_id, method=method
    )
