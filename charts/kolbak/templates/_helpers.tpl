{{/*
Chart name, possibly overridden.
*/}}
{{- define "kolbak.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: fullnameOverride, else the release name (plus the chart name
unless the release name already contains it). Kept short enough for "-operator" suffixes.
*/}}
{{- define "kolbak.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of every object; call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "kolbak.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kolbak.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels of one component; call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "kolbak.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kolbak.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The Kolbak image, repository:tag (tag defaults to the appVersion).
*/}}
{{- define "kolbak.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Name of a component's ServiceAccount; call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "kolbak.serviceAccountName" -}}
{{- printf "%s-%s" (include "kolbak.fullname" .ctx) .component }}
{{- end }}

{{/*
Name of the Secret holding the admin client secret and the JWT key.
*/}}
{{- define "kolbak.adminSecretName" -}}
{{- default (printf "%s-admin" (include "kolbak.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{/*
Whether RBAC is namespaced (a watchNamespace is set) rather than cluster-wide.
*/}}
{{- define "kolbak.namespaced" -}}
{{- if .Values.operator.watchNamespace }}true{{ end }}
{{- end }}

{{/*
Kind and namespace lines of a Role or ClusterRole (and its binding); call with
(dict "ctx" $ "binding" false).
*/}}
{{- define "kolbak.roleKind" -}}
{{- if include "kolbak.namespaced" .ctx -}}
{{ if .binding }}RoleBinding{{ else }}Role{{ end }}
{{- else -}}
{{ if .binding }}ClusterRoleBinding{{ else }}ClusterRole{{ end }}
{{- end }}
{{- end }}

{{/*
Metadata lines of a role or binding object: its name and, for namespaced roles, the watched
namespace; call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "kolbak.roleMeta" -}}
name: {{ include "kolbak.roleName" . }}
{{- if include "kolbak.namespaced" .ctx }}
namespace: {{ .ctx.Values.operator.watchNamespace }}
{{- end }}
{{- end }}

{{/*
Environment of the connections every data-path component needs.
*/}}
{{- define "kolbak.connectionEnv" -}}
- name: KOLBAK_KAFKA_BROKERS
  value: {{ .Values.kafka.brokers | quote }}
- name: KOLBAK_CASSANDRA_NODES
  value: {{ .Values.cassandra.nodes | quote }}
{{- end }}

{{/*
Name of a role or binding object: cluster-scoped names get the release namespace to stay unique
across installations.
*/}}
{{- define "kolbak.roleName" -}}
{{- if include "kolbak.namespaced" .ctx -}}
{{ printf "%s-%s" (include "kolbak.fullname" .ctx) .component }}
{{- else -}}
{{ printf "%s-%s-%s" .ctx.Release.Namespace (include "kolbak.fullname" .ctx) .component }}
{{- end }}
{{- end }}

{{/*
Namespace of the default DispatcherPool and of the dispatcher ServiceAccount: the watched
namespace when there is one (the operator sees nothing else), else the release namespace.
*/}}
{{- define "kolbak.poolNamespace" -}}
{{- default .Release.Namespace .Values.operator.watchNamespace }}
{{- end }}
