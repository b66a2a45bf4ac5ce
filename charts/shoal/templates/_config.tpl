{{/*
The daemon's config.toml. With the default values it is, byte for byte,
the one in deploy/kubernetes/configmap.yaml (tests/chart.rs).
*/}}
{{- define "shoal.config" -}}
# The mirror stays on the node's loopback (hostNetwork): only the node's
# containerd and kubelet reach it.
listen = "127.0.0.1:65001"
# The admin port (metrics, health, /api/v1) is set by the DaemonSet with
# --metrics-listen: loopback and the node's IP, which only it knows.
# Names Prometheus may scrape it by besides IPs (none: it scrapes pod IPs).
admin_hosts = []
data_dir = "/var/lib/shoal"
log_format = "json"
default_registry = "docker.io"
{{- if .Values.registries.credentialsSecret }}
# The daemons' own registry credentials (Secret {{ .Values.registries.credentialsSecret }}).
docker_config = "/etc/shoal/docker/config.json"
{{- end }}
# Leave room for in-flight responses; below the pod's
# terminationGracePeriodSeconds (30s).
shutdown_grace = "20s"

[store]
# Keep below the free space of the node's disk under /var/lib/shoal
# (docs/operations.md, "Sizing the store").
quota = {{ .Values.daemon.store.quota | quote }}
high_watermark = {{ .Values.daemon.store.highWatermark }}
low_watermark = {{ .Values.daemon.store.lowWatermark }}
max_age = {{ .Values.daemon.store.maxAge | quote }}

[swarm]
enabled = true
listen = "0.0.0.0:65003"
# host: $NODE_NAME; advertise: $POD_IP (the node's IP with hostNetwork).
certs_dir = "/etc/shoal/certs"
{{- if .Values.scheduler.enabled }}
# The headless Service resolves to every scheduler replica.
schedulers = ["{{ include "shoal.svc" (dict "ctx" . "name" "shoal-scheduler") }}:65004"]
{{- else }}
# No scheduler (scheduler.enabled=false): every join is answered from the
# discovery DHT below.
schedulers = []
{{- end }}
upload_rate = {{ .Values.daemon.uploadRate | quote }}
max_uploads = {{ .Values.daemon.maxUploads }}

# When no scheduler answers, daemons find each other's blobs through a
# DHT only holders of the cluster key (certs_dir/cluster.key, which the
# init container writes with the certificate) can join.
[swarm.discovery]
listen = "0.0.0.0:65006"
bootstrap = ["{{ include "shoal.svc" (dict "ctx" . "name" "shoal-daemon-peers") }}:65006"]

# How pieces are fetched and served; every key optional, unset keys
# keep their defaults (README.md, "The swarm"):
# [swarm.tuning]
# piece_deadline = "30s"
# handout_grace = "500ms"

# A private registry with credentials of its own (or mount a
# docker config.json and set docker_config):
# [registries."registry.example.com"]
# url = "https://registry.example.com"
{{- range $name, $settings := .Values.registries.settings }}

[registries.{{ $name | toJson }}]
{{- range $k, $v := $settings }}
{{ $k }} = {{ $v | toJson }}
{{- end }}
{{- end }}
{{- with .Values.daemon.extraConfig }}

{{ . }}
{{- end }}
{{- end }}
