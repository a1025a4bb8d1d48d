"""AllowedDomain `spec.ipRange` through the real operator: the store row's IP ranges follow
the objects, and the stored grant is what the server's allow-list check enforces."""

from __future__ import annotations

import re
from typing import Any

import pytest

from acme_server.domain.identifiers import Identifier, IdentifierType, check_allowed
from acme_server.domain.problems import AcmeProblem
from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    API,
    OperatorProcess,
    apply,
    condition,
    get_obj,
    operator_proc,
    registration,
    store_registration,
    store_url,
    wait_condition,
)
from tests.polling import wait_for

__all__ = ["operator_proc", "store_url"]  # fixtures


def ip_grant(name: str, registration_name: str, cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AllowedDomain",
        "metadata": {"name": name},
        "spec": {"registrationName": registration_name, "ipRange": cidr},
    }


def _ranges(url: str, name: str) -> tuple[str, ...] | None:
    row = store_registration(url, name)
    return None if row is None else row.ip_ranges


def test_ip_range_grants_follow_objects(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    name = f"{ns}/edge"
    apply(cp, ns, registration("edge"))
    wait_condition(cp, ns, "acmeregistration", "edge", "False", "NoAllowedDomains", timeout=30)

    apply(cp, ns, ip_grant("lan", "edge", "10.0.0.0/8"))
    cond = condition(wait_condition(cp, ns, "alloweddomain", "lan", "True", "Active"))
    assert cond is not None and "IP addresses in 10.0.0.0/8" in cond["message"]
    assert _ranges(store_url, name) == ("10.0.0.0/8",)
    # An IP range alone is a grant: the registration is ready, and says what it grants.
    wait_for(
        "registration ready naming the range",
        lambda: (
            (c := condition(get_obj(cp, ns, "acmeregistration", "edge"))) is not None
            and c["reason"] == "Reconciled"
            and "10.0.0.0/8" in c["message"]
        ),
        timeout=operator_proc.resync_interval * 3 + 10,
    )

    row = store_registration(store_url, name)
    assert row is not None and not row.any_domain and row.domains == ()
    check_allowed([Identifier(IdentifierType.IP, "10.20.30.40")], row)
    with pytest.raises(AcmeProblem, match=re.escape("allowed IP ranges: 10.0.0.0/8")):
        check_allowed([Identifier(IdentifierType.IP, "192.0.2.1")], row)

    apply(cp, ns, ip_grant("v6", "edge", "2001:db8::/32"))
    wait_for(
        "both ranges in store",
        lambda: _ranges(store_url, name) == ("10.0.0.0/8", "2001:db8::/32"),
    )
    cp.kubectl("delete", "-n", ns, "alloweddomain", "lan")
    wait_for("range removed", lambda: _ranges(store_url, name) == ("2001:db8::/32",))
    cp.kubectl("delete", "-n", ns, "alloweddomain", "v6")
    wait_for("no ranges left", lambda: _ranges(store_url, name) == ())
    wait_condition(cp, ns, "acmeregistration", "edge", "False", "NoAllowedDomains", timeout=30)
