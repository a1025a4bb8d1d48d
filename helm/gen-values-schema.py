#!/usr/bin/env python3
"""Write helm/acme-gateway/values.schema.json: the chart's value schema, kept readable here.

Every object refuses unknown keys (additionalProperties: false) so a typo in a values file
fails `helm install` instead of being ignored; cross-field rules (SQLite means one replica,
PostgreSQL needs its Secret, an Ingress needs a host) sit in the top-level allOf.

    python3 helm/gen-values-schema.py           # rewrite the schema
    python3 helm/gen-values-schema.py --check   # exit 1 when the file is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent / "acme-gateway" / "values.schema.json"


def obj(
    props: dict[str, Any], required: list[str] | None = None, desc: str | None = None, **kw: Any
) -> dict[str, Any]:
    o: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = required
    if desc:
        o["description"] = desc
    o.update(kw)
    return o


def s(desc: str | None = None, **kw: Any) -> dict[str, Any]:
    o: dict[str, Any] = {"type": "string"}
    if desc:
        o["description"] = desc
    o.update(kw)
    return o


def b(desc: str | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {"type": "boolean"}
    if desc:
        o["description"] = desc
    return o


def i(desc: str | None = None, **kw: Any) -> dict[str, Any]:
    o: dict[str, Any] = {"type": "integer"}
    if desc:
        o["description"] = desc
    o.update(kw)
    return o


DNS1123_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUB = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
name_or_empty = {"type": "string", "maxLength": 253, "pattern": "^$|" + DNS1123_SUB}
string_map = {"type": "object", "additionalProperties": {"type": "string"}}
quantity = {
    "oneOf": [
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"},
        {"type": "number", "minimum": 0},
    ]
}
resources = obj(
    {
        "requests": obj({"cpu": quantity, "memory": quantity, "ephemeral-storage": quantity}),
        "limits": obj({"cpu": quantity, "memory": quantity, "ephemeral-storage": quantity}),
    },
    desc="Container resources (requests/limits of cpu, memory, ephemeral-storage).",
)
env_var = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": s(minLength=1),
        "value": s(),
        "valueFrom": {"type": "object", "description": "A core/v1 EnvVarSource."},
    },
}
toleration = obj(
    {
        "key": s(),
        "operator": s(enum=["Exists", "Equal"]),
        "value": s(),
        "effect": s(enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": i(),
    }
)
affinity = obj(
    {
        "nodeAffinity": {"type": "object"},
        "podAffinity": {"type": "object"},
        "podAntiAffinity": {"type": "object"},
    },
    desc="A core/v1 Affinity.",
)
spread = {
    "type": "object",
    "required": ["maxSkew", "topologyKey", "whenUnsatisfiable"],
    "description": "A core/v1 TopologySpreadConstraint.",
    "properties": {
        "maxSkew": i(minimum=1),
        "topologyKey": s(minLength=1),
        "whenUnsatisfiable": s(enum=["DoNotSchedule", "ScheduleAnyway"]),
        "labelSelector": {"type": "object"},
        "minDomains": i(minimum=1),
        "nodeAffinityPolicy": s(enum=["Honor", "Ignore"]),
        "nodeTaintsPolicy": s(enum=["Honor", "Ignore"]),
        "matchLabelKeys": {"type": "array", "items": s()},
    },
    "additionalProperties": False,
}
host_port = s(pattern="^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
duration = s(pattern="^[1-9][0-9]*[smhd]$")
peer = obj(
    {
        "podSelector": {"type": "object"},
        "namespaceSelector": {"type": "object"},
        "ipBlock": obj(
            {"cidr": s(minLength=1), "except": {"type": "array", "items": s()}}, required=["cidr"]
        ),
    },
    desc="A networking/v1 NetworkPolicyPeer.",
)
seccomp = obj(
    {"type": s(enum=["RuntimeDefault", "Localhost", "Unconfined"]), "localhostProfile": s()},
    required=["type"],
)


def cidr_list(desc: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": s(pattern="^[0-9A-Fa-f:.]+/[0-9]{1,3}$"),
        "uniqueItems": True,
        "description": desc,
    }


server = obj(
    {
        "replicaCount": i("Server replicas; more than 1 needs store.type=postgresql.", minimum=1),
        "accountCreation": s("Who may create ACME accounts.", enum=["pre-registered", "open"]),
        "externalBaseURL": s(
            "URL clients use, without trailing slash; empty: derived.",
            pattern="^$|^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\\s]*[^/\\s])?$",
        ),
        "certValidity": {**duration, "description": "Issued certificate lifetime, e.g. 90d."},
        "orderLifetime": {**duration, "description": "How long an order can be completed."},
        "termsOfService": s("meta.termsOfService URL.", pattern="^$|^https?://"),
        "website": s("meta.website URL.", pattern="^$|^https?://"),
        "http01Port": i("Port the http-01 validator connects to.", minimum=1, maximum=65535),
        "tlsalpn01Port": i("Port the tls-alpn-01 validator connects to.", minimum=1, maximum=65535),
        "dnsResolvers": {
            "type": "array",
            "items": host_port,
            "uniqueItems": True,
            "description": "HOST:PORT resolvers for validation lookups.",
        },
        "containerPort": i(minimum=1024, maximum=65535, description="Listen port (unprivileged)."),
        "clientAuthEKU": b("Leaves also carry the clientAuth EKU (default: serverAuth only)."),
        "profiles": obj(  # issue 12: serve --profiles (docs/profiles.md)
            {
                "default": s("Profile of orders that name none.", minLength=1, maxLength=64),
                "profiles": {"type": "object", "additionalProperties": {"type": "object"}},
            },
            desc="Certificate profiles (the --profiles file). Empty: the built-ins.",
        ),
        "workers": i("Server processes per Pod (one per CPU the Pod may use).", minimum=1),
        "accountCacheSeconds": {
            "type": "number",
            "minimum": 0,
            "maximum": 300,
            "description": "How long accounts are served from memory (registration changes "
            "take effect within it).",
        },
        "caa": obj(  # issue 13: serve --caa-identity / --caa-recheck-after
            {
                "identities": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUB},
                    "uniqueItems": True,
                    "description": "Issuer domain names CAA records may name; empty: no CAA.",
                },
                "recheckAfter": {
                    **duration,
                    "description": "Finalize re-checks CAA older than this (e.g. 8h).",
                },
            },
            desc="CAA checking (RFC 8659/8657).",
        ),
        "validation": obj(
            {
                "allowCIDRs": cidr_list(
                    "Ranges validation may reach despite the built-in deny list."
                ),
                "denyCIDRs": cidr_list("Ranges validation must never reach (wins over allow)."),
                "concurrencyPerAccount": i("Validations per account at once.", minimum=1),
                "concurrencyPerRegistration": i("Validations per registration.", minimum=1),
                "dns01RetrySeconds": {  # issue 13 item 4: docs/validation.md
                    "type": "number",
                    "minimum": 0,
                    "maximum": 3600,
                    "description": "Seconds a missing dns-01 TXT record is retried.",
                },
                "quorum": i("dnsResolvers that must each find a dns-01 record; 0: all.", minimum=0),
                "lease": {  # issue 14 item 5: docs/operations.md
                    **duration,
                    "description": "How long a replica owns a challenge it validates (> 10s).",
                },
            }
        ),
        "limits": obj(
            {
                "maxPendingOrders": i("Unfinished orders per account.", minimum=1),
                "maxPendingAuthorizations": i("Pending authorizations per account.", minimum=1),
                "maxConnections": i("Open client connections per server process.", minimum=1),
                "purgeAfter": {**duration, "description": "Purge dead orders/authzs this old."},
            }
        ),
        "tls": obj(
            {
                "enabled": b("Serve HTTPS (false: --insecure-http)."),
                "existingSecret": name_or_empty,
                "extraNames": {"type": "array", "items": s(minLength=1), "uniqueItems": True},
            }
        ),
        "resources": resources,
        "extraEnv": {"type": "array", "items": env_var},
        "podAnnotations": string_map,
        "podLabels": string_map,
        "nodeSelector": string_map,
        "tolerations": {"type": "array", "items": toleration},
        "affinity": affinity,
        "topologySpreadConstraints": {"type": "array", "items": spread},
        "priorityClassName": s(),
        "terminationGracePeriodSeconds": i(minimum=0),
        "preStopSleepSeconds": i(minimum=0, maximum=120),
    }
)
operator = obj(
    {
        "watchNamespaces": {
            "type": "array",
            "uniqueItems": True,
            "items": s(pattern=DNS1123_LABEL, maxLength=63),
            "description": "Namespaces to watch; empty: all (ClusterRole).",
        },
        "exportInterval": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "healthPort": i(minimum=1024, maximum=65535),
        "metricsPort": i(minimum=1024, maximum=65535),
        "resources": resources,
        "extraEnv": {"type": "array", "items": env_var},
        "replicaCount": i(
            "Operator replicas (store.type=postgresql only); more than 1: Lease leader election.",
            minimum=1,
        ),
        "leaderElection": obj(
            {
                "leaseDuration": i(minimum=2, maximum=600),
                "renewDeadline": i(minimum=1, maximum=599),
                "retryPeriod": i(minimum=1, maximum=60),
            },
            desc="Lease timing in seconds: retryPeriod < renewDeadline < leaseDuration.",
        ),
        "podAnnotations": string_map,
        "podLabels": string_map,
        "nodeSelector": string_map,
        "tolerations": {"type": "array", "items": toleration},
        "affinity": affinity,
        "priorityClassName": s(),
    }
)
schema = obj(
    {
        "nameOverride": s(maxLength=63, pattern="^$|" + DNS1123_LABEL),
        "fullnameOverride": s(maxLength=63, pattern="^$|" + DNS1123_LABEL),
        "clusterDomain": s(pattern=DNS1123_SUB),
        "image": obj(
            {
                "repository": s(minLength=1),
                "tag": s(pattern="^$|^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
                "digest": s(pattern="^$|^sha256:[a-f0-9]{64}$"),
                "pullPolicy": s(enum=["IfNotPresent", "Always", "Never"]),
            }
        ),
        "imagePullSecrets": {
            "type": "array",
            "items": obj({"name": s(minLength=1)}, required=["name"]),
        },
        "server": server,
        "operator": operator,
        "store": obj(
            {
                "type": s(
                    "sqlite (one replica, PVC) or postgresql (external, several replicas).",
                    enum=["sqlite", "postgresql"],
                ),
                "postgresql": obj(
                    {
                        "existingSecret": name_or_empty,
                        "urlKey": s(minLength=1, pattern="^[-._a-zA-Z0-9]+$"),
                    }
                ),
            }
        ),
        "persistence": obj(
            {
                "existingClaim": name_or_empty,
                "size": quantity,
                "storageClassName": s(),
                "accessModes": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": s(enum=["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]),
                },
                "keep": b("Keep the chart-created claim on uninstall."),
                "annotations": string_map,
            }
        ),
        "ca": obj(
            {
                "existingSecret": name_or_empty,
                "generate": obj(
                    {
                        "commonName": s(minLength=1, maxLength=64),
                    }
                ),
            }
        ),
        "serviceAccount": obj(
            {"annotations": string_map, "operatorName": name_or_empty, "serverName": name_or_empty}
        ),
        "rbac": obj({"aggregate": b(), "aggregateAllowedDomainEditToAdmin": b()}),
        "service": obj(
            {
                "type": s(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": i(minimum=1, maximum=65535),
                "annotations": string_map,
            }
        ),
        "ingress": obj(
            {
                "enabled": b(),
                "className": s(),
                "host": s(
                    pattern="^$|^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
                ),
                "path": s(pattern="^/"),
                "annotations": string_map,
                "tls": obj({"secretName": name_or_empty}),
            }
        ),
        "podDisruptionBudget": obj(
            {"enabled": b(), "maxUnavailable": {"oneOf": [i(minimum=1), s(pattern="^[0-9]+%$")]}}
        ),
        "networkPolicy": obj({"enabled": b(), "allowedFrom": {"type": "array", "items": peer}}),
        "metrics": obj(
            {
                "enabled": b("Serve /metrics on a port of its own (--metrics-listen)."),
                "port": i(minimum=1024, maximum=65535, description="Metrics container port."),
                "allowedFrom": {"type": "array", "items": peer},
                "serviceMonitor": obj(
                    {
                        "enabled": b(),
                        "interval": s(pattern="^[0-9]+(ms|s|m|h)$"),
                        "scrapeTimeout": s(pattern="^[0-9]+(ms|s|m|h)$"),
                        "labels": string_map,
                    }
                ),
                "prometheusRule": obj(
                    {"enabled": b("PrometheusRule from files/alerts.yaml."), "labels": string_map}
                ),
                "dashboard": obj(
                    {
                        "enabled": b("Grafana dashboard ConfigMap (files/dashboard.json)."),
                        "labels": string_map,
                        "annotations": string_map,
                    }
                ),
            }
        ),
        "logging": obj(
            {
                "level": s(enum=["debug", "info", "warning", "error"]),
                "format": s(enum=["json", "text"], description="--log-format of both."),
            }
        ),
        "commonLabels": string_map,
        "podSecurityContext": obj(
            {
                "runAsNonRoot": {
                    "const": True,
                    "description": "The image runs as uid 10001; root is refused.",
                },
                "runAsUser": i(minimum=1),
                "runAsGroup": i(minimum=1),
                "fsGroup": i(minimum=1),
                "fsGroupChangePolicy": s(enum=["OnRootMismatch", "Always"]),
                "seccompProfile": seccomp,
                "supplementalGroups": {"type": "array", "items": i(minimum=0)},
            }
        ),
        "containerSecurityContext": obj(
            {
                "allowPrivilegeEscalation": {"const": False},
                "readOnlyRootFilesystem": b(),
                "runAsNonRoot": {"const": True},
                "privileged": {"const": False},
                "capabilities": obj(
                    {
                        "drop": {"type": "array", "items": s()},
                        "add": {"type": "array", "items": s(), "maxItems": 0},
                    }
                ),
                "seccompProfile": seccomp,
            }
        ),
    },
    title="acme-gateway chart values",
)
schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
# Cross-field rules: the messages helm prints point at the offending value.
schema["allOf"] = [
    {
        "$comment": "SQLite: one writer on one ReadWriteOnce volume, so one server replica.",
        "if": {"properties": {"store": {"properties": {"type": {"const": "sqlite"}}}}},
        "then": {"properties": {"server": {"properties": {"replicaCount": {"maximum": 1}}}}},
    },
    {
        "$comment": "PostgreSQL needs the Secret with its URL.",
        "if": {
            "properties": {
                "store": {"properties": {"type": {"const": "postgresql"}}, "required": ["type"]}
            },
            "required": ["store"],
        },
        "then": {
            "properties": {
                "store": {
                    "properties": {
                        "postgresql": {"properties": {"existingSecret": {"minLength": 1}}}
                    }
                }
            }
        },
    },
    {
        "$comment": "An Ingress needs a host.",
        "if": {
            "properties": {
                "ingress": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]}
            },
            "required": ["ingress"],
        },
        "then": {"properties": {"ingress": {"properties": {"host": {"minLength": 1}}}}},
    },
]


def render() -> str:
    """The schema file's text ($schema first)."""
    body = dict(schema)
    out = {"$schema": body.pop("$schema"), **body}
    return json.dumps(out, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is out of date: run {argv[0]}", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
