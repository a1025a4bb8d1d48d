"""Alembic environment: always run with a connection handed in by Database.migrate()."""

from alembic import context

from acme_server.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only autogenerate from a developer shell
    import sqlalchemy as sa

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///:memory:"
    connection = sa.create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
