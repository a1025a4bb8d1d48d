{{/* The operator's rules: exactly the ClusterRole documented in operator/rbac.md (why each
     verb is needed is explained there; tests/helm asserts the two are equal). The operator
     turns off Kopf's cluster scanning, so it needs nothing cluster-scoped. */}}
{{- define "acme-gateway.operatorRules" -}}
# Kopf watches registrations and patches its finalizer and bookkeeping annotations; the
# exporter reads a registration to set the owner of certificate Secrets.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations]
  verbs: [get, list, watch, patch]
# Ready condition, effective keyID, accounts and counts.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement clusters).
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations/finalizers]
  verbs: [update]
# Kopf watches domain grants (never creates or deletes them).
- apiGroups: [acme-gateway.io]
  resources: [alloweddomains]
  verbs: [list, watch, patch]
- apiGroups: [acme-gateway.io]
  resources: [alloweddomains/status]
  verbs: [patch]
# EAB HMAC key Secrets (read, generate, rotate) and exported certificate Secrets; list and
# watch (label-filtered, metadata only) for the revoke annotation; no delete (exported
# Secrets go by garbage collection).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
