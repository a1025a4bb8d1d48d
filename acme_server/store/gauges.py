"""Store-wide numbers the metrics sampler reads (one process samples them every few seconds)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from acme_server.domain.statuses import ChallengeStatus
from acme_server.store.database import Database
from acme_server.store.schema import challenges, nonces

# Uses ix_challenges_due (status first).
_QUEUE_DEPTH = (
    sa.select(sa.func.count())
    .select_from(challenges)
    .where(challenges.c.status == ChallengeStatus.PROCESSING)
)
_SPENT_NONCES = sa.select(sa.func.count()).select_from(nonces)


@dataclass(frozen=True)
class StoreGauges:
    validation_queue: int
    spent_nonces: int | None  # None unless asked for (--nonce-scope store)


async def read(db: Database, *, spent_nonces: bool) -> StoreGauges:
    def unit(conn: sa.Connection) -> StoreGauges:
        depth = conn.execute(_QUEUE_DEPTH).scalar_one()
        spent = conn.execute(_SPENT_NONCES).scalar_one() if spent_nonces else None
        return StoreGauges(int(depth), None if spent is None else int(spent))

    return await db.read(unit)
