"""Kopf handlers, registered into an explicit registry by `register_all`."""

from __future__ import annotations

import kopf

from acme_operator.config import OperatorConfig
from acme_operator.handlers import (
    background,
    domains,
    export,
    operator_level,
    registrations,
    revoke,
)


def register_all(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    operator_level.register(registry, config)
    registrations.register(registry, config)
    domains.register(registry, config)
    export.register(registry, config)
    background.register(registry, config)
    revoke.register(registry, config)
