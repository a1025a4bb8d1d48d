"""Where kopf keeps its bookkeeping: in `status.kopf`, so a handled change costs one PATCH.

Kopf's annotation storages write metadata.annotations (a PATCH of the object) besides the
status (a PATCH of the status subresource): two API writes per handled change, which at
10,000 objects doubled the load on the API server. Objects handled by an older operator
carry the annotations: they are still read (then superseded), never written again.
"""

from __future__ import annotations

from typing import Any

import kopf

from acme_operator.constants import KOPF_PREFIX

STATUS_NAME = "kopf"  # status.kopf.{last-handled-configuration,progress,dummy}


class StatusFirstDiffBase(kopf.MultiDiffBaseStorage):
    """Reads status.kopf, then the old annotation; writes status.kopf only."""

    def __init__(self) -> None:
        self.primary = kopf.StatusDiffBaseStorage(name=STATUS_NAME)
        super().__init__(
            [
                self.primary,
                kopf.AnnotationsDiffBaseStorage(
                    prefix=KOPF_PREFIX, key="last-handled-configuration"
                ),
            ]
        )

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        self.primary.store(body=body, patch=patch, essence=essence)


class StatusFirstProgress(kopf.MultiProgressStorage):
    """Reads status.kopf.progress, then the old annotations; writes status only, purges both."""

    def __init__(self) -> None:
        self.primary = kopf.StatusProgressStorage(name=STATUS_NAME)
        super().__init__([self.primary, kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)])

    def store(self, *, key: Any, record: Any, body: Any, patch: Any) -> None:
        self.primary.store(key=key, record=record, body=body, patch=patch)

    def touch(self, *, body: Any, patch: Any, value: str | None) -> None:
        self.primary.touch(body=body, patch=patch, value=value)
