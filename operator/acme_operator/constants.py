"""Names shared with the CRDs (crds/) and the Helm chart: change them only together."""

from __future__ import annotations

GROUP = "acme-gateway.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
REGISTRATION_KIND = "AcmeRegistration"
REGISTRATIONS = "acmeregistrations"
DOMAINS = "alloweddomains"

FINALIZER = f"{GROUP}/finalizer"
KOPF_PREFIX = f"kopf.{GROUP}"  # kopf's own progress/diff-base annotations
ROTATE_ANNOTATION = f"{GROUP}/rotate-hmac-key"
# On an exported certificate Secret: revoke it with this reason; the handled value is
# recorded in the second one, so a restart never handles one request twice.
REVOKE_ANNOTATION = f"{GROUP}/revoke"
REVOKE_HANDLED_ANNOTATION = f"{GROUP}/revoke-handled"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "acme-gateway"
REGISTRATION_LABEL = f"{GROUP}/registration"
SERIAL_LABEL = f"{GROUP}/serial"
PURPOSE_LABEL = f"{GROUP}/purpose"

CERT_SECRET_TYPE = f"{GROUP}/certificate"
DEFAULT_HMAC_SECRET_KEY = "secret"  # noqa: S105 - the Secret data key name, not a secret
