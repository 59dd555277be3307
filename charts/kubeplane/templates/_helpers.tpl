{{/* The chart name, or nameOverride. */}}
{{- define "kubeplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The base name of every object: the release name when it contains the chart name. */}}
{{- define "kubeplane.fullname" -}}
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

{{- define "kubeplane.operatorName" -}}
{{- printf "%s-operator" (include "kubeplane.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubeplane.agentName" -}}
{{- printf "%s-agent" (include "kubeplane.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kubeplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubeplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ default .Release.Service .Values.managedBy }}
app.kubernetes.io/part-of: kubeplane
{{- end }}

{{/* Selector labels of a component ("operator" or "agent"); never change after install. */}}
{{- define "kubeplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeplane.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "kubeplane.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The agent's service-account user name, as the API server authenticates it. */}}
{{- define "kubeplane.agentUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "kubeplane.agentName" .) }}
{{- end }}

{{/* Fails rendering when a path value is not absolute and clean. */}}
{{- define "kubeplane.checkPath" -}}
{{- if not (regexMatch "^/([^/]+(/[^/]+)*)?$" .value) }}
{{- fail (printf "%s: %q must be an absolute path without a trailing slash or empty segments" .name .value) }}
{{- end }}
{{- if regexMatch "(^|/)\\.\\.?(/|$)" .value }}
{{- fail (printf "%s: %q must not contain . or .. segments" .name .value) }}
{{- end }}
{{- end }}

{{/*
The agent's CRI endpoint and the socket path to mount: agent.containerRuntimeEndpoint is
"none" (no socket) or unix:///ABSOLUTE/PATH (or a plain absolute path); anything else is refused.
*/}}
{{- define "kubeplane.criSocket" -}}
{{- $e := .Values.agent.containerRuntimeEndpoint | default "none" | toString | trim -}}
{{- if eq $e "none" -}}
endpoint: none
{{- else -}}
{{- $path := trimPrefix "unix://" $e -}}
{{- if or (contains "://" $path) (not (hasPrefix "/" $path)) -}}
{{- fail (printf "agent.containerRuntimeEndpoint %q: expected unix:///absolute/path.sock or none" $e) -}}
{{- end -}}
endpoint: {{ printf "unix://%s" $path | quote }}
socket: {{ $path | quote }}
{{- end -}}
{{- end }}
