{{/* The release's resources' name prefix. */}}
{{- define "rayo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every resource carries. */}}
{{- define "rayo.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the release's pods. */}}
{{- define "rayo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rayo.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default (printf "v%s" .Chart.AppVersion) }}
{{- end -}}

{{- define "rayo.tokenSecret" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "rayo.fullname" .)) -}}
{{- end -}}

{{- define "rayo.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "rayo.fullname" .)) -}}
{{- end -}}

{{- define "rayo.headService" -}}
{{ include "rayo.fullname" . }}-head
{{- end -}}

{{- define "rayo.redisAddress" -}}
{{- if .Values.redis.address -}}
{{ .Values.redis.address }}
{{- else -}}
{{ include "rayo.fullname" . }}-redis:6379
{{- end -}}
{{- end -}}

{{/*
rayo.node is a node's container: the daemon in the foreground (the
image's RAYO_BLOCK), configured by its flags' environment twins, on the
pod's IP (which it registers for other nodes to reach), with the token
from the mounted Secret. Its argument is a dict: root (the chart's
context), node (head or a worker group's values), head (a bool).
*/}}
{{- define "rayo.node" -}}
{{- $root := .root -}}
{{- $node := .node -}}
{{- $ports := $root.Values.ports -}}
{{- if le (int $node.memoryMiB) 0 -}}
{{- fail "memoryMiB: want a whole number of MiB above 0 for every node" -}}
{{- end -}}
{{- if or (lt (int $node.objectStorePercent) 1) (gt (int $node.objectStorePercent) 90) -}}
{{- fail "objectStorePercent: want 1 to 90, the share of memoryMiB the object store takes" -}}
{{- end -}}
- name: rayo
  image: {{ include "rayo.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: {{ if .head }}["start", "--head"]{{ else }}["start"]{{ end }}
  env:
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: RAYO_HOST
      value: $(POD_IP)
    - name: RAYO_METRICS_HOST
      value: $(POD_IP)
    # TLS with the cluster's CA (the TLS Secret): the head signs with it,
    # a worker pins it; rayo commands in the pod trust it for the API
    # server too.
    - name: RAYO_TLS_CA
      value: /etc/rayo/tls/ca.crt
    {{- if .head }}
    - name: RAYO_TLS_CA_KEY
      value: /etc/rayo/tls/ca.key
    - name: RAYO_PORT
      value: {{ $ports.controlStore | quote }}
    - name: RAYO_DASHBOARD_HOST
      value: 0.0.0.0
    {{- $svc := include "rayo.headService" $root }}
    {{- $ns := $root.Release.Namespace }}
    - name: RAYO_DASHBOARD_ALLOWED_HOSTS
      value: {{ printf "%s,%s.%s,%s.%s.svc,%s.%s.svc.cluster.local" $svc $svc $ns $svc $ns $svc $ns | quote }}
    - name: RAYO_DASHBOARD_PORT
      value: {{ $ports.dashboard | quote }}
    {{- if $root.Values.redis.enabled }}
    - name: RAYO_REDIS_ADDRESS
      value: {{ include "rayo.redisAddress" $root | quote }}
    {{- if $root.Values.redis.passwordSecret }}
    - name: RAYO_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $root.Values.redis.passwordSecret }}
          key: password
    {{- end }}
    {{- end }}
    {{- else }}
    - name: RAYO_ADDRESS
      value: {{ printf "%s:%v" (include "rayo.headService" $root) $ports.controlStore | quote }}
    {{- end }}
    - name: RAYO_RAYLET_PORT
      value: {{ $ports.raylet | quote }}
    - name: RAYO_METRICS_PORT
      value: {{ $ports.metrics | quote }}
    - name: RAYO_NUM_CPUS
      value: {{ $node.cpu | quote }}
    - name: RAYO_OBJECT_STORE_MEMORY
      value: {{ printf "%dMiB" (div (mul (int $node.memoryMiB) (int $node.objectStorePercent)) 100) | quote }}
    {{- with $node.customResources }}
    - name: RAYO_RESOURCES
      value: {{ toJson . | quote }}
    {{- end }}
    - name: RAYO_TOKEN_FILE
      value: /etc/rayo/token/token
    {{- with $node.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if .head }}
    - name: control-store
      containerPort: {{ $ports.controlStore }}
    - name: dashboard
      containerPort: {{ $ports.dashboard }}
    {{- end }}
    - name: raylet
      containerPort: {{ $ports.raylet }}
    - name: metrics
      containerPort: {{ $ports.metrics }}
  resources:
    requests:
      cpu: {{ $node.cpu | quote }}
      memory: {{ printf "%dMi" (int $node.memoryMiB) }}
    limits:
      cpu: {{ $node.cpu | quote }}
      memory: {{ printf "%dMi" (int $node.memoryMiB) }}
  {{- if .head }}
  readinessProbe:
    httpGet:
      path: /api/v0/healthz
      port: dashboard
      scheme: HTTPS
    periodSeconds: 5
    timeoutSeconds: 2
  livenessProbe:
    httpGet:
      path: /api/v0/healthz
      port: dashboard
      scheme: HTTPS
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 6
  {{- else }}
  readinessProbe:
    tcpSocket:
      port: raylet
    periodSeconds: 5
  livenessProbe:
    httpGet:
      path: /metrics
      port: metrics
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 6
  {{- end }}
  lifecycle:
    preStop:
      exec:
        {{- if .head }}
        # The head cannot be drained: rayo stop ends the daemon.
        command: ["rayo", "stop"]
        {{- else }}
        # rayo drain --self: no new work comes to this node, its running
        # work finishes (within the grace period, less a margin), its
        # objects' owners hear of it, and the daemon exits.
        command: ["rayo", "drain", "--self", "--deadline", "{{ sub (int $root.Values.terminationGracePeriodSeconds) 5 | max 1 }}s"]
        {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: token
      mountPath: /etc/rayo/token
      readOnly: true
    - name: tls
      mountPath: /etc/rayo/tls
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/*
rayo.volumes are a node pod's volumes: the token, the cluster's CA (its
key in the head's pod only) and its /tmp. Its argument is a dict: root
(the chart's context), head (a bool).
*/}}
{{- define "rayo.volumes" -}}
- name: token
  secret:
    secretName: {{ include "rayo.tokenSecret" .root }}
    # Readable by the pod's group (fsGroup), the daemon's user being no
    # root.
    defaultMode: 0440
- name: tls
  secret:
    secretName: {{ include "rayo.tlsSecret" .root }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
      {{- if .head }}
      - key: ca.key
        path: ca.key
      {{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{/* rayo.podSecurityContext makes the mounted token readable by the daemon's user. */}}
{{- define "rayo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
{{- end -}}
