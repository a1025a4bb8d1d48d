"""Prometheus metrics, served at /metrics."""

from prometheus_client import Counter

REQUESTS = Counter("acme_gateway_requests_total", "ACME requests", ["route", "status"])
CERTIFICATES_ISSUED = Counter("acme_gateway_certificates_issued_total", "Certificates issued")
REVOCATIONS = Counter("acme_gateway_revocations_total", "Certificates revoked")
VALIDATIONS = Counter("acme_gateway_validations_total", "Challenge validations", ["type", "result"])
