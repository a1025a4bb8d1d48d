"""What every request handler needs, built once at start-up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from acme_server.ca import CertificateAuthority
from acme_server.config import Settings
from acme_server.nonces import NonceService
from acme_server.store.database import Database
from acme_server.validation.caa_lookup import CaaChecker
from acme_server.validation.scheduler import ValidationScheduler
from acme_server.web.account_cache import AccountCache
from acme_server.web.urls import Urls


@dataclass
class AppState:
    settings: Settings
    db: Database
    ca: CertificateAuthority
    nonces: NonceService
    urls: Urls
    accounts: AccountCache
    # Set when a challenge is accepted so the validation loop starts at once.
    validation_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # This process's validator, once started: challenges accepted here are handed to it.
    scheduler: ValidationScheduler | None = None
    # CAA checks (validation/caa_lookup.py); None when no --caa-identity is configured.
    caa: CaaChecker | None = None


STATE_KEY = web.AppKey("acme_state", AppState)


def state_of(request: web.Request) -> AppState:
    return request.app[STATE_KEY]
