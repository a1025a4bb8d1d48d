{{/* Rules the operator needs in every namespace it watches. Derived from what
     operator/acme_operator calls (kube.py, handlers/) plus Kopf's own needs; the helm
     tests run the operator with exactly these rights. */}}
{{- define "acme-gateway.operatorNamespacedRules" -}}
# Kopf lists and watches the resources and patches its finalizer and progress annotations.
# No create/delete: the operator never makes or removes registrations or domain grants.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations, alloweddomains]
  verbs: [get, list, watch, patch]
# Ready conditions, effective keyID, account and certificate counts.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations/status, alloweddomains/status]
  verbs: [get, patch]
# Exported Secrets carry an ownerReference with blockOwnerDeletion to their registration;
# clusters running the OwnerReferencesPermissionEnforcement admission plugin require this.
- apiGroups: [acme-gateway.io]
  resources: [acmeregistrations/finalizers]
  verbs: [update]
# EAB HMAC key Secrets (read, generate, rotate) and exported certificate Secrets. They are
# fetched by name and removed by garbage collection: no list, watch or delete.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, update, patch]
# Kopf and the operator post Events about the objects they handle.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Cluster-scoped rules the operator needs whatever it watches. */}}
{{- define "acme-gateway.operatorClusterRules" -}}
# Kopf checks that the CRDs it serves exist and notices when they change.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.operator.watchNamespaces }}
# Kopf given a namespace list first lists the cluster's namespaces (names only) to match
# it; refused, it retries for about a minute before falling back, delaying every start.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
