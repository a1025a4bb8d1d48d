"""Opaque, unguessable resource IDs used in ACME URLs."""

import secrets


def new_id() -> str:
    return secrets.token_urlsafe(16)
