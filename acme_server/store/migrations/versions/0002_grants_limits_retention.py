"""explicit any-domain grant, per-registration pending caps, retention indexes

Existing registrations get any_domain = false: one that had no allowed domains (which
used to mean "any name") now grants nothing until an admin grants it explicitly.
Certificates outlive their orders, so certificates.order_id becomes nullable (SET NULL).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ORDER_INDEXES = {
    "ix_orders_account_status": ["account_id", "status", "expires_at"],
    "ix_orders_expires": ["expires_at"],
    "ix_orders_status_created": ["status", "created_at"],
}
_AUTHZ_INDEXES = {
    "ix_authz_account_status": ["account_id", "status", "expires_at"],
    "ix_authz_expires": ["expires_at"],
    "ix_authz_status_created": ["status", "created_at"],
}


def upgrade() -> None:
    # Plain ADD COLUMN, never a table rebuild: on SQLite (foreign keys on) dropping the old
    # registrations table would cascade into allowed_domains and unbind accounts.
    op.add_column(
        "registrations",
        sa.Column("any_domain", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("registrations", sa.Column("max_pending_orders", sa.Integer(), nullable=True))
    op.add_column(
        "registrations", sa.Column("max_pending_authorizations", sa.Integer(), nullable=True)
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        for name, cols in _ORDER_INDEXES.items():
            batch_op.create_index(name, cols, unique=False)
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        for name, cols in _AUTHZ_INDEXES.items():
            batch_op.create_index(name, cols, unique=False)
    # Rebuilt on SQLite; safe because no table references certificates.
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_constraint("fk_certificates_order_id_orders", type_="foreignkey")
        batch_op.alter_column("order_id", existing_type=sa.String(length=64), nullable=True)
        batch_op.create_foreign_key(
            "fk_certificates_order_id_orders", "orders", ["order_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_constraint("fk_certificates_order_id_orders", type_="foreignkey")
        batch_op.alter_column("order_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_foreign_key(
            "fk_certificates_order_id_orders", "orders", ["order_id"], ["id"]
        )
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        for name in _AUTHZ_INDEXES:
            batch_op.drop_index(name)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        for name in _ORDER_INDEXES:
            batch_op.drop_index(name)
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_column("max_pending_authorizations")
        batch_op.drop_column("max_pending_orders")
        batch_op.drop_column("any_domain")
