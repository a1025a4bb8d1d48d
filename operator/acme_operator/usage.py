"""The usage part of an AcmeRegistration's status: bound accounts and certificates issued."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from acme_operator.config import OperatorConfig
from acme_operator.context import OperatorContext, store_name
from acme_server.store.operator_facade import BoundAccount
from acme_server.timefmt import rfc3339


async def usage_status(ctx: OperatorContext, namespace: str, name: str) -> dict[str, Any]:
    used = await ctx.rows.usage(store_name(namespace, name))
    return build_usage(ctx.config, used.accounts, used.certificates_issued, used.last_issuance)


def build_usage(
    config: OperatorConfig,
    accounts: list[BoundAccount],
    issued: int,
    last: datetime | None,
) -> dict[str, Any]:
    return {
        "accounts": [
            {
                "url": config.account_url(a.id),
                "status": a.status,
                "keyThumbprint": a.key_thumbprint,
                "created": rfc3339(a.created_at),
            }
            for a in accounts
        ],
        "accountCount": len(accounts),
        "certificatesIssued": issued,
        "lastIssuance": rfc3339(last) if last is not None else None,
    }


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Only what differs, so an unchanged status costs no API write."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}
