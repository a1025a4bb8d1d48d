"""A suspended registration: the team's Issuer says, in its own status, that the account is
refused and why."""

from __future__ import annotations

from typing import Any

from tests.certmanager.conftest import REGISTRATION, CertManagerWorld
from tests.kube.operator_proc import condition
from tests.polling import wait_for


def test_issuer_of_suspended_registration_is_refused(cm: CertManagerWorld) -> None:
    reg = cm.get(cm.suspended_ns, "acmeregistration", REGISTRATION)
    assert (condition(reg) or {}).get("reason") == "Suspended"

    def refused() -> dict[str, Any] | None:
        cond = condition(cm.get(cm.suspended_ns, "issuer", "acme-gateway"))
        return (
            cond if cond and cond["status"] == "False" and "suspended" in cond["message"] else None
        )

    cond = wait_for("the Issuer to report the refused account", refused, 120, 2)
    key_id = cm.key_ids[cm.suspended_ns]
    assert "urn:ietf:params:acme:error:unauthorized" in cond["message"], cond
    assert f"pre-registration {key_id!r} is suspended" in cond["message"], cond
    described = cm.kubectl("describe", "-n", cm.suspended_ns, "issuer", "acme-gateway")
    assert "is suspended" in described, described
