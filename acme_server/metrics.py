"""Prometheus metrics, served at /metrics."""

from prometheus_client import Counter, Gauge

CERTIFICATES_ISSUED = Counter("acme_gateway_certificates_issued_total", "Certificates issued")
REVOCATIONS = Counter("acme_gateway_revocations_total", "Certificates revoked")
VALIDATIONS = Counter("acme_gateway_validations_total", "Challenge validations", ["type", "result"])

# Hostile input (issue 8): what must stay bounded; the server sets their functions.
JWK_CACHE_ENTRIES = Gauge("acme_gateway_jwk_cache_entries", "Parsed account keys cached")
OPEN_CONNECTIONS = Gauge("acme_gateway_open_connections", "Open client connections")
