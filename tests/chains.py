"""The one check every issuance test makes: the served chain is a valid TLS chain to our root.

Verification uses cryptography's own path builder (`x509.verification`), as a TLS client
would, rather than re-implementing signature checks in the tests.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store

# The label put in place of a wildcard's `*` to check that the leaf serves a concrete host.
WILDCARD_LABEL = "host"


def concrete_name(name: str) -> str:
    """`name`, or for a wildcard `*.zone` a host it must cover (`host.zone`)."""
    return f"{WILDCARD_LABEL}.{name[2:]}" if name.startswith("*.") else name


def verify_chain(
    chain: str | bytes | list[x509.Certificate], root_pem: bytes, names: list[str]
) -> x509.Certificate:
    """The leaf of `chain` (PEM, leaf first) after checking that the chain leaves out the
    root, verifies to `root_pem` as a server certificate for every name (wildcards through a
    concrete host) now, and that the leaf's DNS SANs are exactly `names`."""
    if isinstance(chain, str):
        chain = chain.encode()
    certs = x509.load_pem_x509_certificates(chain) if isinstance(chain, bytes) else list(chain)
    assert certs, "empty chain"
    root = x509.load_pem_x509_certificate(root_pem)
    assert root not in certs, "the chain must not include the root"
    leaf, intermediates = certs[0], certs[1:]
    now = dt.datetime.now(dt.UTC)
    for name in names:
        verifier = (
            PolicyBuilder()
            .store(Store([root]))
            .time(now)
            .build_server_verifier(DNSName(concrete_name(name)))
        )
        verifier.verify(leaf, intermediates)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(DNSName)) == sorted(names)
    return leaf
