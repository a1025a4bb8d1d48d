"""Small key/value facts shared by all processes (the CA root the operator exports, ...)."""

from __future__ import annotations

import sqlalchemy as sa

from acme_server.store.database import Database
from acme_server.store.schema import meta

CA_ROOT_PEM = "ca_root_pem"


async def get(db: Database, key: str) -> str | None:
    query = sa.select(meta.c.value).where(meta.c.key == key)
    return await db.read(lambda conn: conn.execute(query).scalar())


async def put(db: Database, key: str, value: str) -> None:
    def unit(conn: sa.Connection) -> None:
        updated = conn.execute(meta.update().where(meta.c.key == key).values(value=value))
        if not updated.rowcount:
            conn.execute(meta.insert().values(key=key, value=value))

    await db.write(unit)
