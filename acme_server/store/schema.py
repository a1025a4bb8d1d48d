"""The store's tables: the single source of truth shared by server processes and the operator.

Every table is plain SQLAlchemy Core so the same schema runs on SQLite (embedded default)
and PostgreSQL (several processes). Timestamps are timezone-aware UTC; JSON columns hold
small documents that are always read whole.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UTCDateTime

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Unique admin-facing name; the operator uses "<namespace>/<name>".
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    # EAB key ID the ACME client presents.
    sa.Column("kid", sa.String(255), nullable=False, unique=True),
    # HMAC key as unpadded base64url, exactly what clients are given.
    sa.Column("hmac_key", sa.String(255), nullable=False),
    sa.Column("max_accounts", sa.Integer, nullable=True),
    sa.Column("suspended", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", TS(), nullable=False),
    sa.Column("updated_at", TS(), nullable=False),
    # Explicit "any name" grant; without it only the allowed_domains rows grant names.
    sa.Column("any_domain", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # Per-registration rate-limit overrides; NULL = the server-wide default.
    sa.Column("max_pending_orders", sa.Integer, nullable=True),
    sa.Column("max_pending_authorizations", sa.Integer, nullable=True),
    # Certificate profiles: the names it may use (NULL = every profile that needs no
    # explicit grant) and the one its orders get without `profile` (NULL = the server's).
    sa.Column("allowed_profiles", sa.JSON, nullable=True),
    sa.Column("default_profile", sa.String(64), nullable=True),
    # RFC 8738 IP identifiers: the CIDR ranges it may request addresses in (canonical text,
    # e.g. "10.0.0.0/8"); NULL = none. `any_domain` never grants addresses.
    sa.Column("ip_ranges", sa.JSON, nullable=True),
)

allowed_domains = sa.Table(
    "allowed_domains",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "registration_id",
        sa.Integer,
        sa.ForeignKey("registrations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Normalised: lower-case A-label form, no trailing dot, never a wildcard.
    sa.Column("domain", sa.String(253), nullable=False),
    sa.Column("include_subdomains", sa.Boolean, nullable=False, default=True),
    sa.Column("allow_wildcard", sa.Boolean, nullable=False, default=True),
    sa.UniqueConstraint("registration_id", "domain"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # RFC 7638 thumbprint (base64url) of the current account key: one key, one account.
    sa.Column("key_thumbprint", sa.String(64), nullable=False, unique=True),
    sa.Column("jwk", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # valid | deactivated | revoked
    sa.Column("contact", sa.JSON, nullable=False),
    sa.Column("tos_agreed", sa.Boolean, nullable=False, default=False),
    # Bound pre-registration; NULL after its deletion (then eab_kid tells it was bound).
    sa.Column(
        "registration_id",
        sa.Integer,
        sa.ForeignKey("registrations.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    sa.Column("eab_kid", sa.String(255), nullable=True),
    sa.Column("eab_binding", sa.JSON, nullable=True),
    sa.Column("created_at", TS(), nullable=False),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("value", sa.String(64), primary_key=True),
    sa.Column("expires_at", TS(), nullable=False, index=True),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "account_id",
        sa.String(64),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # pending | ready | processing | valid | invalid
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("identifiers", sa.JSON, nullable=False),  # [{"type": "dns"|"ip", "value": ...}]
    sa.Column("not_before", TS(), nullable=True),
    sa.Column("not_after", TS(), nullable=True),
    sa.Column("profile", sa.String(64), nullable=True),  # NULL: placed before profiles
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("certificate_id", sa.String(64), nullable=True),
    sa.Column("expires_at", TS(), nullable=False),
    sa.Column("created_at", TS(), nullable=False),
    sa.Index("ix_orders_account_created", "account_id", "created_at", "id"),
    # Pending-order cap (per account) and retention purge.
    sa.Index("ix_orders_account_status", "account_id", "status", "expires_at"),
    sa.Index("ix_orders_expires", "expires_at"),
    sa.Index("ix_orders_status_created", "status", "created_at"),
)

authorizations = sa.Table(
    "authorizations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "account_id",
        sa.String(64),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("identifier_value", sa.String(253), nullable=False),  # without "*."
    # "dns" or "ip" (RFC 8738): an ip authorization never stands for a dns name.
    sa.Column("identifier_type", sa.String(8), nullable=False, default="dns", server_default="dns"),
    sa.Column("wildcard", sa.Boolean, nullable=False, default=False),
    # pending | valid | invalid | deactivated | expired | revoked
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", TS(), nullable=False),
    sa.Column("created_at", TS(), nullable=False),
    # CAA (issue 13): when CAA last allowed issuance for it (NULL: never checked); finalize
    # re-checks names whose check is older than --caa-recheck-after.
    sa.Column("caa_checked_at", TS(), nullable=True),
    sa.Index("ix_authz_reuse", "account_id", "identifier_value", "wildcard", "status"),
    # Pending-authorization cap (per account) and retention purge.
    sa.Index("ix_authz_account_status", "account_id", "status", "expires_at"),
    sa.Index("ix_authz_expires", "expires_at"),
    sa.Index("ix_authz_status_created", "status", "created_at"),
)

order_authorizations = sa.Table(
    "order_authorizations",
    metadata,
    sa.Column(
        "order_id", sa.String(64), sa.ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "authz_id",
        sa.String(64),
        sa.ForeignKey("authorizations.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
)

challenges = sa.Table(
    "challenges",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "authz_id",
        sa.String(64),
        sa.ForeignKey("authorizations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("type", sa.String(16), nullable=False),  # http-01 | dns-01 | tls-alpn-01
    sa.Column("token", sa.String(64), nullable=False),
    # pending | processing | valid | invalid
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("validated_at", TS(), nullable=True),
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # Background validation queue: due time and a lease so one process works on it.
    sa.Column("next_attempt_at", TS(), nullable=True),
    sa.Column("lease_until", TS(), nullable=True),
    sa.Index("ix_challenges_due", "status", "next_attempt_at"),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("serial", sa.String(64), nullable=False, unique=True),  # lower-case hex
    # NULL once retention purged the (expired) order; the certificate itself is kept.
    sa.Column(
        "order_id",
        sa.String(64),
        sa.ForeignKey("orders.id", ondelete="SET NULL"),
        nullable=True,
        unique=True,
    ),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column(
        "registration_id",
        sa.Integer,
        sa.ForeignKey("registrations.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    sa.Column("names", sa.JSON, nullable=False),
    sa.Column("chain_pem", sa.Text, nullable=False),  # leaf + intermediate(s), no root
    # SHA-256 of the leaf's SubjectPublicKeyInfo, hex: revocation signed by the cert key.
    sa.Column("spki_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("not_before", TS(), nullable=False),
    sa.Column("not_after", TS(), nullable=False),
    sa.Column("revoked_at", TS(), nullable=True),
    sa.Column("revocation_reason", sa.Integer, nullable=True),
    sa.Column("created_at", TS(), nullable=False),
    # Outbox for the operator: bumped on every change it must export (issue, revocation).
    sa.Column("revision", sa.Integer, nullable=False, default=1),
    sa.Column("exported_revision", sa.Integer, nullable=False, default=0),
    # ARI (RFC 9773): the order that replaces this certificate (newOrder `replaces`).
    sa.Column("replaced_by_order_id", sa.String(64), nullable=True),
    sa.Index("ix_certificates_outbox", "registration_id", "exported_revision", "revision"),
    # The CRL lists revoked, unexpired certificates.
    sa.Index("ix_certificates_revoked", "revoked_at", "not_after"),
)

# The current CRL of each issuing CA, shared so every process serves the same bytes and the
# CRL number never goes backwards; `stale` is set by each revocation (same transaction).
crls = sa.Table(
    "crls",
    metadata,
    sa.Column("issuer_key_id", sa.String(128), primary_key=True),  # hex key identifier
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("this_update", TS(), nullable=True),
    sa.Column("next_update", TS(), nullable=True),
    sa.Column("der", sa.LargeBinary, nullable=True),
    sa.Column("stale", sa.Boolean, nullable=False, default=True),
)

# Small shared facts every process must agree on (e.g. the CA root PEM the operator exports).
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
