{{/*
Labels of every object: the selector labels deploy/kubernetes uses, plus
Helm's. Call with (dict "ctx" $ "component" "daemon"); component optional.
*/}}
{{- define "shoal.labels" -}}
app.kubernetes.io/name: shoal
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: shoal
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end }}

{{/*
Selector (and pod) labels: fixed, as in deploy/kubernetes, so one release
per cluster (the daemons use fixed host ports anyway).
*/}}
{{- define "shoal.selector" -}}
app.kubernetes.io/name: shoal
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "shoal.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* A Service's DNS name in the release namespace. */}}
{{- define "shoal.svc" -}}
{{ printf "%s.%s.svc.%s" .name .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{- define "shoal.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The container securityContext every shoal container has. */}}
{{- define "shoal.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop:
      - ALL
{{- end }}

{{/* Pod securityContext of the non-root pods (scheduler, prewarm). */}}
{{- define "shoal.nonRootPod" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "shoal.checks" -}}
{{- if and (not .Values.scheduler.enabled) (or .Values.prewarm.job.enabled .Values.prewarm.cronJob.enabled) }}
{{- fail "prewarm.job and prewarm.cronJob need the scheduler: set scheduler.enabled=true or turn them off" }}
{{- end }}
{{- if and .Values.certificates.create (not (and .Values.certificates.ca.crt .Values.certificates.ca.key)) }}
{{- fail "certificates.create=true needs certificates.ca.crt and certificates.ca.key (--set-file them from `shoal certs ca` output)" }}
{{- end }}
{{- if and .Values.certificates.create .Values.scheduler.enabled (not (and .Values.certificates.scheduler.crt .Values.certificates.scheduler.key)) }}
{{- fail "certificates.create=true needs certificates.scheduler.crt and .key (--set-file them from `shoal certs scheduler` output)" }}
{{- end }}
{{- include "shoal.harborChecks" . }}
{{- end }}
