{{/* The release's full name, at most 63 characters. */}}
{{- define "trainwright.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trainwright.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "trainwright.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "trainwright.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trainwright
{{- end -}}

{{- define "trainwright.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "trainwright.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trainwright.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "trainwright.trainerImage" -}}
{{- printf "%s:%s" .Values.trainerImage.repository (default .Chart.AppVersion .Values.trainerImage.tag) -}}
{{- end -}}

{{/* Where the catalog ConfigMap is mounted in the operator. */}}
{{- define "trainwright.catalogPath" -}}
/etc/trainwright/catalog.yaml
{{- end -}}

{{/* "true" when the operator runs with leader election (leaderElection.enabled, or null and more
than one replica); "" otherwise. More than one replica without it is refused. */}}
{{- define "trainwright.leaderElect" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- $enabled := .Values.leaderElection.enabled -}}
{{- if kindIs "invalid" $enabled -}}
{{- $enabled = gt $replicas 1 -}}
{{- end -}}
{{- if and (not $enabled) (gt $replicas 1) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would act on every job" -}}
{{- end -}}
{{- if $enabled -}}true{{- end -}}
{{- end -}}

{{/* The Lease the replicas share (the operator's --leader-election-id). */}}
{{- define "trainwright.leaseName" -}}
{{- printf "%s-operator" (include "trainwright.fullname" .) -}}
{{- end -}}
