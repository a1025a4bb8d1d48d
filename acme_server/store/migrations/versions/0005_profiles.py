"""certificate profiles: an order's profile, a registration's allowed and default profiles

Revision ID: 0005_profiles
Revises: 0004_revocation_info
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_profiles"
down_revision = "0004_revocation_info"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("profile", sa.String(length=64), nullable=True))
    op.add_column("registrations", sa.Column("allowed_profiles", sa.JSON(), nullable=True))
    op.add_column(
        "registrations", sa.Column("default_profile", sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_column("default_profile")
        batch_op.drop_column("allowed_profiles")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("profile")
