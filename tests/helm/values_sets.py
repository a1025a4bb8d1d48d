"""The value combinations the chart must render correctly, by name.

Each is a complete, valid values file: the tests lint, template, dry-run and inspect them.
"""

from __future__ import annotations

from typing import Any

RELEASE = "gw"
NAMESPACE = "acme-system"
FULLNAME = "gw-acme-gateway"
WATCHED = ["tenant-a", "tenant-b"]  # not team-a: test_docs_install creates that

VALUE_SETS: dict[str, dict[str, Any]] = {
    # The default: SQLite on a PVC, one Pod with server + operator, cluster-wide operator.
    "sqlite-default": {},
    # Several server replicas on an external PostgreSQL; the operator is its own Deployment.
    "postgresql-ha": {
        "store": {"type": "postgresql", "postgresql": {"existingSecret": "acme-db"}},
        "server": {"replicaCount": 3},
    },
    # Published through an Ingress (TLS to the backend: the server speaks HTTPS).
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "acme.example.com",
            "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"},
            "tls": {"secretName": "acme-example-com-tls"},
        },
    },
    # Bring your own CA and server certificate.
    "byo-ca": {
        "ca": {"existingSecret": "corp-issuing-ca"},
        "server": {
            "tls": {"existingSecret": "acme-server-tls"},
            "externalBaseURL": "https://acme.corp.example:8443",
            "accountCreation": "open",
            "certValidity": "30d",
            "http01Port": 8080,
            "tlsalpn01Port": 8443,
            "dnsResolvers": ["10.0.0.10:53", "10.0.0.11:53"],
            "caa": {"identities": ["acme.corp.example", "pki.corp.example"], "recheckAfter": "4h"},
            "clientAuthEKU": True,
            "validation": {
                "allowCIDRs": ["127.0.0.0/8"],
                "denyCIDRs": ["10.96.0.1/32", "10.0.0.0/24"],
                "concurrencyPerAccount": 2,
                "concurrencyPerRegistration": 4,
                "dns01RetrySeconds": 30,
                "quorum": 1,  # either resolver is enough (failover, not agreement)
                "lease": "45s",
            },
            "limits": {
                "maxPendingOrders": 30,
                "maxPendingAuthorizations": 100,
                "maxConnections": 256,
                "purgeAfter": "7d",
            },
        },
    },
    # The operator confined to listed namespaces (Roles, not a ClusterRole, for Secrets).
    "watch-namespaces": {"operator": {"watchNamespaces": WATCHED}},
    # Plain HTTP behind a proxy, metrics scraped, aggregated domain editing for admins.
    "http-monitoring": {
        "server": {"tls": {"enabled": False}, "externalBaseURL": "https://acme.example.net"},
        "service": {"port": 80},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "rbac": {"aggregateAllowedDomainEditToAdmin": True},
        "networkPolicy": {
            "allowedFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
            ]
        },
    },
    # The optional knobs: existing claim, pinned digest, extra env, scheduling, no aggregation.
    "options": {
        "rbac": {"aggregate": False},
        "persistence": {"existingClaim": "my-claim", "keep": False},
        "server": {
            "extraEnv": [{"name": "ACME_GATEWAY_WEBSITE", "value": "https://pki.example.com"}],
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "pki", "effect": "NoSchedule"}
            ],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "termsOfService": "https://pki.example.com/tos",
        },
        "operator": {"extraEnv": [{"name": "ACME_GATEWAY_RESYNC_INTERVAL", "value": "60"}]},
        "image": {"digest": "sha256:" + "0123456789abcdef" * 4},
        "imagePullSecrets": [{"name": "regcred"}],
        "commonLabels": {"team": "pki"},
    },
}

# Values helm must refuse, with words its message must contain.
INVALID_VALUES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "sqlite-replicas": (
        {"server": {"replicaCount": 3}},
        ["/server/replicaCount", "maximum: got 3, want 1"],
    ),
    "account-creation": (
        {"server": {"accountCreation": "sometimes"}},
        ["/server/accountCreation", "must be one of", "pre-registered", "open"],
    ),
    "unknown-key": (
        {"server": {"replicas": 2}},
        ["/server", "additional properties", "replicas"],
    ),
    "postgresql-without-secret": (
        {"store": {"type": "postgresql"}, "server": {"replicaCount": 2}},
        ["/store/postgresql/existingSecret", "minLength"],
    ),
    "bad-validity": (
        {"server": {"certValidity": "90 days"}},
        ["/server/certValidity", "90 days"],
    ),
    "root": (
        {"podSecurityContext": {"runAsNonRoot": False}},
        ["/podSecurityContext/runAsNonRoot"],
    ),
}
