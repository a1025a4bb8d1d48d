"""Challenge validators (http-01, dns-01, tls-alpn-01); the scheduler that runs them lives beside them."""

from acme_server.validation.dns01 import dns01_txt_value, validate_dns01
from acme_server.validation.errors import ValidationError
from acme_server.validation.http01 import make_http_session, validate_http01
from acme_server.validation.resolver import make_resolver
from acme_server.validation.tls_alpn01 import validate_tls_alpn01

__all__ = [
    "ValidationError",
    "dns01_txt_value",
    "make_http_session",
    "make_resolver",
    "validate_dns01",
    "validate_http01",
    "validate_tls_alpn01",
]
