"""The operator's log setup (acme_operator/log_setup.py): the server's JSON and text
formats, with kopf's object reference turned into kind/namespace/name (and registration)
fields, kopf's record extras left out, and its per-event chatter dropped above DEBUG."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from acme_operator import log_setup

# What kopf's ObjectLogger attaches (sent through a logger of ours: kopf.objects has kopf's
# Event poster once kopf's engines are imported, which reads real settings).
KOPF_EXTRA: dict[str, Any] = {
    "settings": object(),
    "k8s_skip": False,
    "k8s_ref": {
        "apiVersion": "acme-gateway.io/v1alpha1",
        "kind": "AcmeRegistration",
        "name": "team",
        "uid": "u-1",
        "namespace": "tenant-a",
    },
}


def test_json_names_the_object_and_drops_kopf_extras(stream: io.StringIO) -> None:
    log_setup.configure("DEBUG", "json", stream)
    logging.getLogger("acme_operator.kopf_like").info(
        "Handler 'reconcile' succeeded.", extra=KOPF_EXTRA
    )
    domain = {**KOPF_EXTRA, "k8s_ref": {**KOPF_EXTRA["k8s_ref"], "kind": "AllowedDomain"}}
    logging.getLogger("acme_operator.kopf_like").debug("patching", extra=domain)
    logging.getLogger("acme_operator.exporter").info("plain")
    reg, dom, plain = (json.loads(line) for line in stream.getvalue().splitlines())
    assert reg["message"] == "Handler 'reconcile' succeeded."
    assert (reg["kind"], reg["namespace"], reg["name"]) == ("AcmeRegistration", "tenant-a", "team")
    assert reg["registration"] == "tenant-a/team"
    assert dom["kind"] == "AllowedDomain" and "registration" not in dom
    assert not {"settings", "k8s_ref", "k8s_skip"} & (reg.keys() | dom.keys())
    assert plain["message"] == "plain" and "kind" not in plain


def test_text_appends_the_object(stream: io.StringIO) -> None:
    log_setup.configure("INFO", "text", stream)
    logging.getLogger("acme_operator.kopf_like").info(
        "Handler 'reconcile' succeeded.", extra=KOPF_EXTRA
    )
    line = stream.getvalue().strip()
    assert line.endswith(
        "Handler 'reconcile' succeeded. "
        "[registration=tenant-a/team kind=AcmeRegistration namespace=tenant-a name=team]"
    )


@pytest.mark.parametrize(("level", "kept"), [("INFO", 1), ("DEBUG", 3)])
def test_timer_chatter_only_at_debug(stream: io.StringIO, level: str, kept: int) -> None:
    log_setup.configure(level, "json", stream)
    objects = logging.getLogger("acme_operator.kopf_like")
    objects.info("Timer 'resync' succeeded.", extra=KOPF_EXTRA)
    objects.info("Handler 'gone' succeeded.", extra=KOPF_EXTRA)
    objects.info("Handler 'reconcile' succeeded.", extra=KOPF_EXTRA)
    assert len(stream.getvalue().splitlines()) == kept
