"""http-01's pure part: which redirect targets are followed, and how.
(The validation itself runs against BIND9 and real servers in tests/validation/test_http01.py.)"""

from __future__ import annotations

import pytest

from acme_server.validation import ValidationError
from acme_server.validation.http01 import _redirect_target


def test_redirect_target_policy() -> None:
    here = "http://a.acme.test:5002/.well-known/acme-challenge/t"
    assert str(_redirect_target(here, "https://b.acme.test/p#frag", 5002)) == (
        "https://b.acme.test/p"
    )
    assert str(_redirect_target(here, "http://b.acme.test/p", 5002)) == "http://b.acme.test/p"
    assert str(_redirect_target(here, "//b.acme.test:5002/p", 5002)) == (
        "http://b.acme.test:5002/p"
    )
    with pytest.raises(ValidationError, match=r"port is not allowed \(443 for https\)"):
        _redirect_target(here, "https://b.acme.test:8443/p", 5002)


def test_redirect_target_drops_credentials_and_refuses_bad_hosts() -> None:
    here = "http://a.acme.test/.well-known/acme-challenge/t"
    assert str(_redirect_target(here, "http://user:pw@b.acme.test/p", 5002)) == (
        "http://b.acme.test/p"
    )
    for bad in ("http://xn--/p", "http://[::1/p", "http://b.acme.test:99999/p"):
        with pytest.raises(ValidationError) as info:
            _redirect_target(here, bad, 5002)
        assert info.value.problem_type == "connection"
        assert bad not in info.value.detail
