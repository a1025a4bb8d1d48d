"""Label values are limited to 63 characters; object names are not."""

from __future__ import annotations

import hashlib


def label_value(text: str) -> str:
    """`text` itself when it fits, else a stable shortened form (prefix + hash)."""
    if len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[:52].rstrip('.-_')}-{digest}"
