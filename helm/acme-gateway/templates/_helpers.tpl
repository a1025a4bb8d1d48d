{{/* Names ---------------------------------------------------------------- */}}

{{- define "acme-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "acme-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the namespace too: two releases of the same name in
     different namespaces must not fight over one ClusterRole. */}}
{{- define "acme-gateway.clusterName" -}}
{{- printf "%s:%s" .Release.Namespace (include "acme-gateway.fullname" .) }}
{{- end }}

{{- define "acme-gateway.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "acme-gateway.fullname" .)) .Values.serviceAccount.operatorName }}
{{- end }}

{{- define "acme-gateway.serverServiceAccount" -}}
{{- default (printf "%s-server" (include "acme-gateway.fullname" .)) .Values.serviceAccount.serverName }}
{{- end }}

{{- define "acme-gateway.caSecret" -}}
{{- default (printf "%s-ca" (include "acme-gateway.fullname" .)) .Values.ca.existingSecret }}
{{- end }}

{{- define "acme-gateway.dataClaim" -}}
{{- default (printf "%s-data" (include "acme-gateway.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "acme-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Labels --------------------------------------------------------------- */}}

{{- define "acme-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "acme-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: acme-gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels for one component ("server" or "operator"). With SQLite both run in
     the server Pod, which then carries component=server. */}}
{{- define "acme-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acme-gateway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Server URL ----------------------------------------------------------- */}}

{{- define "acme-gateway.serviceHost" -}}
{{- printf "%s.%s.svc" (include "acme-gateway.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The base URL clients see; the server builds every ACME URL (and checks JWS `url`)
     from it, so it must match what clients dial. */}}
{{- define "acme-gateway.baseURL" -}}
{{- if .Values.server.externalBaseURL }}
{{- .Values.server.externalBaseURL | trimSuffix "/" }}
{{- else if .Values.ingress.enabled }}
{{- printf "https://%s" .Values.ingress.host }}
{{- else }}
{{- $scheme := ternary "https" "http" .Values.server.tls.enabled }}
{{- $default := ternary 443 80 .Values.server.tls.enabled }}
{{- if eq (int .Values.service.port) $default }}
{{- printf "%s://%s" $scheme (include "acme-gateway.serviceHost" .) }}
{{- else }}
{{- printf "%s://%s:%d" $scheme (include "acme-gateway.serviceHost" .) (int .Values.service.port) }}
{{- end }}
{{- end }}
{{- end }}

{{/* DNS names in the self-issued server certificate: every way to name the Service,
     plus the external host. */}}
{{- define "acme-gateway.tlsNames" -}}
{{- $full := include "acme-gateway.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $full (printf "%s.%s" $full $ns) (printf "%s.%s.svc" $full $ns) (printf "%s.%s.svc.%s" $full $ns .Values.clusterDomain) }}
{{- $host := regexReplaceAll "^[a-z]+://([^/:]+).*$" (include "acme-gateway.baseURL" .) "${1}" }}
{{- $names = append $names $host }}
{{- range .Values.server.tls.extraNames }}
{{- $names = append $names . }}
{{- end }}
{{- $names | uniq | toJson }}
{{- end }}

{{/* Security context and the API token for the operator ------------------- */}}

{{/* The pods never automount a token; only the operator container gets this volume,
     mounted where client libraries look for the in-cluster credentials. */}}
{{- define "acme-gateway.apiTokenVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end }}

{{- /* "true" when the operator runs as several replicas with Lease leader election
       (PostgreSQL mode and operator.replicaCount > 1), else empty. */}}
{{- define "acme-gateway.operatorLeaderElection" -}}
{{- if and (eq .Values.store.type "postgresql") (gt (int .Values.operator.replicaCount) 1) -}}
{{- $le := .Values.operator.leaderElection -}}
{{- if not (and (lt (int $le.retryPeriod) (int $le.renewDeadline)) (lt (int $le.renewDeadline) (int $le.leaseDuration))) -}}
{{- fail "operator.leaderElection: needs retryPeriod < renewDeadline < leaseDuration" -}}
{{- end -}}
true
{{- end -}}
{{- end }}

{{- define "acme-gateway.operatorLeaseName" -}}
{{ include "acme-gateway.fullname" . }}-operator
{{- end }}

{{- define "acme-gateway.operatorContainer" -}}
- name: operator
  image: {{ include "acme-gateway.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["acme-gateway-operator"]
  args:
    {{- if eq .Values.store.type "sqlite" }}
    - --data-dir=/data
    {{- end }}
    {{- range .Values.operator.watchNamespaces }}
    - --namespace={{ . }}
    {{- end }}
    - --health-listen=0.0.0.0:{{ .Values.operator.healthPort }}
    {{- if .Values.metrics.enabled }}
    - --metrics-listen=0.0.0.0:{{ .Values.operator.metricsPort }}
    {{- end }}
    - --export-interval={{ .Values.operator.exportInterval }}
    - --acme-base-url={{ include "acme-gateway.baseURL" . }}
    - --log-level={{ .Values.logging.level }}
    - --log-format={{ .Values.logging.format }}
    {{- if include "acme-gateway.operatorLeaderElection" . }}
    {{- $le := .Values.operator.leaderElection }}
    - --leader-election
    - --lease-name={{ include "acme-gateway.operatorLeaseName" . }}
    - --lease-namespace={{ .Release.Namespace }}
    - --lease-duration={{ $le.leaseDuration }}
    - --lease-renew-deadline={{ $le.renewDeadline }}
    - --lease-retry-period={{ $le.retryPeriod }}
    {{- end }}
  {{- if or (eq .Values.store.type "postgresql") .Values.operator.extraEnv }}
  env:
    {{- if include "acme-gateway.operatorLeaderElection" . }}
    # The Lease holder identity: the Pod name plus a random suffix per start.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- end }}
    {{- if eq .Values.store.type "postgresql" }}
    # The store URL stays out of the process arguments.
    - name: ACME_GATEWAY_DATABASE
      valueFrom:
        secretKeyRef:
          name: {{ .Values.store.postgresql.existingSecret }}
          key: {{ .Values.store.postgresql.urlKey }}
    {{- end }}
    {{- with .Values.operator.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  ports:
    - name: health
      containerPort: {{ .Values.operator.healthPort }}
      protocol: TCP
    {{- if .Values.metrics.enabled }}
    - name: op-metrics
      containerPort: {{ .Values.operator.metricsPort }}
      protocol: TCP
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: health
    initialDelaySeconds: 10
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /healthz
      port: health
    periodSeconds: 10
    timeoutSeconds: 5
  resources:
    {{- toYaml .Values.operator.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- if eq .Values.store.type "sqlite" }}
    - name: data
      mountPath: /data
    {{- end }}
{{- end }}

{{- /* The one place the chart migrates the store: an init container of the server Pod runs
       `acme-gateway store migrate` before the server (and, with SQLite, the operator
       container of the same Pod) starts. The operator never migrates; it exits with a
       one-line message until the store is at its schema revision (PostgreSQL mode: until
       the server Pod's init container has run). */}}
{{- define "acme-gateway.migrateInitContainer" -}}
- name: store-migrate
  image: {{ include "acme-gateway.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - store
    - migrate
    {{- if eq .Values.store.type "sqlite" }}
    - --data-dir=/data
    {{- end }}
  {{- if eq .Values.store.type "postgresql" }}
  env:
    - name: ACME_GATEWAY_DATABASE
      valueFrom:
        secretKeyRef:
          name: {{ .Values.store.postgresql.existingSecret }}
          key: {{ .Values.store.postgresql.urlKey }}
  {{- end }}
  resources:
    {{- toYaml .Values.server.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if eq .Values.store.type "sqlite" }}
    - name: data
      mountPath: /data
    {{- end }}
{{- end }}
