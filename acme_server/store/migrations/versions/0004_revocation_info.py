"""revocation information: stored CRLs per issuer, certificates replaced through ARI

Revision ID: 0004_revocation_info
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_revocation_info"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "certificates", sa.Column("replaced_by_order_id", sa.String(length=64), nullable=True)
    )
    op.create_index(
        "ix_certificates_revoked", "certificates", ["revoked_at", "not_after"], unique=False
    )
    op.create_table(
        "crls",
        sa.Column("issuer_key_id", sa.String(length=128), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("der", sa.LargeBinary(), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("issuer_key_id", name=op.f("pk_crls")),
    )


def downgrade() -> None:
    op.drop_table("crls")
    op.drop_index("ix_certificates_revoked", table_name="certificates")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_column("replaced_by_order_id")
