"""AcmeRegistration's spec.profiles / spec.defaultProfile on a real API server: accepted
when consistent, refused with a message that says what to fix otherwise."""

from __future__ import annotations

from tests.infra.kube import ControlPlane
from tests.kube.conftest import control_plane, kube_namespace  # noqa: F401
from tests.kube.test_crds import create, get_json, refused_create, registration


def test_profiles_fields(control_plane: ControlPlane, kube_namespace: str) -> None:  # noqa: F811
    cp, ns = control_plane, kube_namespace
    create(cp, ns, registration("prof-ok", {"profiles": ["default", "shortlived"]}))
    create(
        cp,
        ns,
        registration("prof-dflt", {"profiles": ["default"], "defaultProfile": "default"}),
    )
    create(cp, ns, registration("prof-only-default", {"defaultProfile": "shortlived"}))
    spec = get_json(cp, ns, "acmeregistration", "prof-ok")["spec"]
    assert spec["profiles"] == ["default", "shortlived"]

    err = refused_create(
        cp, ns, registration("prof-bad", {"profiles": ["default"], "defaultProfile": "x"})
    )
    assert "defaultProfile must be one of profiles" in err, err
    err = refused_create(cp, ns, registration("prof-empty", {"profiles": []}))
    assert "should have at least 1 items" in err or "must have at least 1 items" in err, err
    err = refused_create(cp, ns, registration("prof-dup", {"profiles": ["a", "a"]}))
    assert "Duplicate value" in err, err
    err = refused_create(cp, ns, registration("prof-long", {"profiles": ["p" * 65]}))
    assert "may not be longer than 64" in err or "Too long" in err, err
