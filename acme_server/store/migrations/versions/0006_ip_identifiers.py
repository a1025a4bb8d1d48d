"""IP identifiers (RFC 8738): an authorization's identifier type, a registration's IP ranges

Revision ID: 0006_ip_identifiers
Revises: 0005_profiles
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_ip_identifiers"
down_revision = "0005_profiles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every authorization so far was for a DNS name.
    op.add_column(
        "authorizations",
        sa.Column("identifier_type", sa.String(length=8), nullable=False, server_default="dns"),
    )
    op.add_column("registrations", sa.Column("ip_ranges", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_column("ip_ranges")
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.drop_column("identifier_type")
