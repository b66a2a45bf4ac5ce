{{/*
Harbor's P2P preheat API on the schedulers (docs/operations.md, "Harbor
preheat"): the flags, the credentials, TLS and CA volumes, and the checks.
The credentials and the TLS key reach the scheduler only as files from
Secrets, mounted read-only: never in the ConfigMap, the args or the env.
*/}}

{{/* Where the credentials Secret and the CA bundle are mounted. */}}
{{- define "shoal.harborCredentialsDir" -}}/etc/shoal/harbor{{- end }}
{{- define "shoal.harborCaDir" -}}/etc/shoal/harbor-ca{{- end }}
{{- define "shoal.harborTlsDir" -}}/etc/shoal/harbor-tls{{- end }}

{{/* The scheduler's --harbor-* args, one list item a line. */}}
{{- define "shoal.harborArgs" -}}
{{- with .Values.harbor -}}
- --harbor-listen=0.0.0.0:{{ .port }}
- --harbor-auth={{ .auth }}
- --harbor-credentials-file={{ include "shoal.harborCredentialsDir" $ }}/credentials
- --harbor-seed-peers={{ .seedPeers }}
{{- with .platforms }}
- --harbor-platforms={{ join "," . }}
{{- end }}
{{- if or .caBundle.secret .caBundle.configMap }}
- --harbor-ca-bundle={{ include "shoal.harborCaDir" $ }}/ca.crt
{{- end }}
{{- if .tls.enabled }}
- --harbor-tls-cert={{ include "shoal.harborTlsDir" $ }}/tls.crt
- --harbor-tls-key={{ include "shoal.harborTlsDir" $ }}/tls.key
{{- end }}
{{- end }}
{{- end }}

{{- define "shoal.harborVolumeMounts" -}}
- name: harbor-credentials
  mountPath: {{ include "shoal.harborCredentialsDir" . }}
  readOnly: true
{{- if or .Values.harbor.caBundle.secret .Values.harbor.caBundle.configMap }}
- name: harbor-ca
  mountPath: {{ include "shoal.harborCaDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.harbor.tls.enabled }}
- name: harbor-tls
  mountPath: {{ include "shoal.harborTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "shoal.harborVolumes" -}}
{{- with .Values.harbor -}}
- name: harbor-credentials
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .existingSecretKey }}
        path: credentials
{{- if .caBundle.secret }}
- name: harbor-ca
  secret:
    secretName: {{ .caBundle.secret }}
    items:
      - key: {{ .caBundle.key }}
        path: ca.crt
{{- else if .caBundle.configMap }}
- name: harbor-ca
  configMap:
    name: {{ .caBundle.configMap }}
    items:
      - key: {{ .caBundle.key }}
        path: ca.crt
{{- end }}
{{- if .tls.enabled }}
- name: harbor-tls
  secret:
    secretName: {{ .tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end }}

{{/*
Refusals, named after the value to change. The API listens on 0.0.0.0
(Harbor reaches it through a Service), where `shoal scheduler` refuses to
start without authentication: the chart says so at render time instead.
*/}}
{{- define "shoal.harborChecks" -}}
{{- with .Values.harbor -}}
{{- if .enabled }}
{{- if not $.Values.scheduler.enabled }}
{{- fail "harbor.enabled=true needs the scheduler, which serves Harbor's preheat API: set scheduler.enabled=true or harbor.enabled=false" }}
{{- end }}
{{- if eq (toString .auth) "none" }}
{{- fail "harbor.auth=none is refused: the scheduler serves Harbor on 0.0.0.0, where it refuses to start without authentication; set harbor.auth to bearer (Harbor's OAUTH) or basic (Harbor's BASIC) and harbor.existingSecret" }}
{{- end }}
{{- if not (has (toString .auth) (list "basic" "bearer")) }}
{{- fail (printf "harbor.auth=%s: must be bearer (Harbor's OAUTH) or basic (Harbor's BASIC)" (toString .auth)) }}
{{- end }}
{{- if not .existingSecret }}
{{- fail "harbor.enabled=true needs harbor.existingSecret: a Secret whose key harbor.existingSecretKey holds the token (bearer) or username:password (basic)" }}
{{- end }}
{{- if lt (int .seedPeers) 1 }}
{{- fail "harbor.seedPeers must be at least 1" }}
{{- end }}
{{- if and .tls.enabled (not .tls.existingSecret) }}
{{- fail "harbor.tls.enabled=true needs harbor.tls.existingSecret: a kubernetes.io/tls Secret (keys tls.crt and tls.key) the API serves HTTPS with; set harbor.tls.enabled=false only with a TLS-terminating proxy in front" }}
{{- end }}
{{- if and .caBundle.secret .caBundle.configMap }}
{{- fail "harbor.caBundle: set secret or configMap, not both" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
