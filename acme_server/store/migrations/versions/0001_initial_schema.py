"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )

    op.create_table(
        "nonces",
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("value", name=op.f("pk_nonces")),
    )
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nonces_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "registrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kid", sa.String(length=255), nullable=False),
        sa.Column("hmac_key", sa.String(length=255), nullable=False),
        sa.Column("max_accounts", sa.Integer(), nullable=True),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("kid", name=op.f("uq_registrations_kid")),
        sa.UniqueConstraint("name", name=op.f("uq_registrations_name")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_thumbprint", sa.String(length=64), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("tos_agreed", sa.Boolean(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=True),
        sa.Column("eab_kid", sa.String(length=255), nullable=True),
        sa.Column("eab_binding", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_accounts_registration_id_registrations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("key_thumbprint", name=op.f("uq_accounts_key_thumbprint")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_accounts_registration_id"), ["registration_id"], unique=False
        )

    op.create_table(
        "allowed_domains",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("include_subdomains", sa.Boolean(), nullable=False),
        sa.Column("allow_wildcard", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_allowed_domains_registration_id_registrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowed_domains")),
        sa.UniqueConstraint(
            "registration_id", "domain", name=op.f("uq_allowed_domains_registration_id_domain")
        ),
    )
    op.create_table(
        "authorizations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("identifier_value", sa.String(length=253), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_authorizations_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorizations")),
    )
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_authz_reuse", ["account_id", "identifier_value", "wildcard", "status"], unique=False
        )

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_orders_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_account_created", ["account_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "certificates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=True),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("exported_revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_certificates_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_certificates_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            name=op.f("fk_certificates_registration_id_registrations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("order_id", name=op.f("uq_certificates_order_id")),
        sa.UniqueConstraint("serial", name=op.f("uq_certificates_serial")),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_certificates_outbox",
            ["registration_id", "exported_revision", "revision"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_certificates_registration_id"), ["registration_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_certificates_spki_sha256"), ["spki_sha256"], unique=False
        )

    op.create_table(
        "challenges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("authz_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["authz_id"],
            ["authorizations.id"],
            name=op.f("fk_challenges_authz_id_authorizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenges")),
    )
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_challenges_authz_id"), ["authz_id"], unique=False)
        batch_op.create_index("ix_challenges_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "order_authorizations",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("authz_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authz_id"],
            ["authorizations.id"],
            name=op.f("fk_order_authorizations_authz_id_authorizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_authorizations_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", "authz_id", name=op.f("pk_order_authorizations")),
    )
    with op.batch_alter_table("order_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_order_authorizations_authz_id"), ["authz_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("meta")

    with op.batch_alter_table("order_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_authorizations_authz_id"))

    op.drop_table("order_authorizations")
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.drop_index("ix_challenges_due")
        batch_op.drop_index(batch_op.f("ix_challenges_authz_id"))

    op.drop_table("challenges")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_spki_sha256"))
        batch_op.drop_index(batch_op.f("ix_certificates_registration_id"))
        batch_op.drop_index("ix_certificates_outbox")

    op.drop_table("certificates")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_account_created")

    op.drop_table("orders")
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.drop_index("ix_authz_reuse")

    op.drop_table("authorizations")
    op.drop_table("allowed_domains")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_registration_id"))

    op.drop_table("accounts")
    op.drop_table("registrations")
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nonces_expires_at"))

    op.drop_table("nonces")
