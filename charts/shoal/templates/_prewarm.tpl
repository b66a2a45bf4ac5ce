{{/*
The pod of a prewarm Job: `shoal prewarm --all-nodes --wait` through the
node's own daemon (host network: the mirror on 127.0.0.1:65001, the admin
API on 127.0.0.1:65002), as non-root.
*/}}
{{- define "shoal.prewarmPod" -}}
metadata:
  labels:
    {{- include "shoal.selector" "prewarm" | nindent 4 }}
spec:
  restartPolicy: Never
  # The node's mirror listens on its loopback: share the node's network.
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  automountServiceAccountToken: false
  {{- include "shoal.imagePullSecrets" . | nindent 2 }}
  {{- include "shoal.nonRootPod" . | nindent 2 }}
  containers:
    - name: prewarm
      image: {{ include "shoal.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - prewarm
        - --mirror=http://127.0.0.1:65001
        - --admin=http://127.0.0.1:65002
        - --all-nodes
        - --wait
        - --timeout={{ .Values.prewarm.timeout }}
        {{- range .Values.prewarm.extraArgs }}
        - {{ . | quote }}
        {{- end }}
        {{- range required "prewarm.images must name at least one image" .Values.prewarm.images }}
        - {{ . }}
        {{- end }}
      resources:
        {{- toYaml .Values.prewarm.resources | nindent 8 }}
      {{- include "shoal.containerSecurity" . | nindent 6 }}
{{- end }}
