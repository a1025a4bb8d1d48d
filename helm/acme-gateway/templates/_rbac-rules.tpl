{{/* Rules the operator needs in every namespace it watches. */}}
{{- define "acme-gateway.operatorNamespacedRules" -}}
# Watch the custom resources, add/remove Kopf's finalizer and annotations.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations, alloweddomains]
  verbs: [get, list, watch, patch]
# Report Ready conditions, keyID and account counts.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations/status, alloweddomains/status]
  verbs: [get, patch]
# EAB HMAC key Secrets (read, generate, rotate) and exported certificate Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch, delete]
# Kopf posts handler outcomes as Events on the objects.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Cluster-scoped rules the operator needs whatever it watches. */}}
{{- define "acme-gateway.operatorClusterRules" -}}
# Kopf checks that the CRDs it serves exist and notices when they change.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not .Values.operator.watchNamespaces }}
# Cluster-wide Kopf follows namespaces as they come and go.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
