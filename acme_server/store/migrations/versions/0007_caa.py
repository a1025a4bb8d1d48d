"""CAA: when CAA last allowed issuance for an authorization

Revision ID: 0007_caa
Revises: 0006_ip_identifiers
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_caa"
down_revision = "0006_ip_identifiers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "authorizations", sa.Column("caa_checked_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.drop_column("caa_checked_at")
