{{/* ------------------------------------------------------------------ names */}}

{{- define "secondpass.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secondpass.fullname" -}}
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

{{- define "secondpass.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secondpass.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secondpass.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secondpass.labels" -}}
helm.sh/chart: {{ include "secondpass.chart" . }}
{{ include "secondpass.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ ternary "reranker-with-qdrant" "reranker" (eq .Values.mode "pod-with-qdrant") }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "secondpass.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "secondpass.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ checks */}}

{{- define "secondpass.validate" -}}
{{- if not (has .Values.mode (list "standalone" "pod-with-qdrant")) }}
{{- fail (printf "mode must be \"standalone\" or \"pod-with-qdrant\", not %q" (toString .Values.mode)) }}
{{- end }}
{{- if and (eq .Values.mode "pod-with-qdrant") (gt (int .Values.replicaCount) 1) }}
{{- fail "mode pod-with-qdrant runs one Qdrant per pod without clustering: keep replicaCount at 1, or run the official qdrant/qdrant chart with secondpass as a sidecar (examples/qdrant-sidecar-values.yaml)" }}
{{- end }}
{{- if and (eq .Values.mode "pod-with-qdrant") .Values.autoscaling.enabled }}
{{- fail "autoscaling is for mode standalone only: scaling the pod-with-qdrant StatefulSet would start unclustered Qdrant replicas" }}
{{- end }}
{{- if and (eq .Values.mode "pod-with-qdrant") .Values.qdrant.exposePorts }}
{{- $mine := list (int .Values.service.ports.rest) (int .Values.service.ports.grpc) (int .Values.service.ports.admin) }}
{{- if or (has (int .Values.qdrant.ports.http) $mine) (has (int .Values.qdrant.ports.grpc) $mine) }}
{{- fail "qdrant.exposePorts: Qdrant's ports collide with service.ports; give secondpass other Service ports (e.g. 7333/7334/7335)" }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.create .Values.secrets.existingSecret }}
{{- fail "set either secrets.create or secrets.existingSecret, not both" }}
{{- end }}
{{- if and .Values.configToml .Values.config }}
{{- fail "set either config (a map rendered to TOML) or configToml (a raw TOML string), not both; set config: {} to use configToml" }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- if not (or .Values.redis.existingSecret .Values.secrets.existingSecret .Values.secrets.create) }}
{{- fail "redis.enabled needs the Redis URL from a Secret: set redis.existingSecret, secrets.existingSecret, or secrets.create with secrets.redisUrl" }}
{{- end }}
{{- if and .Values.secrets.create (not .Values.redis.existingSecret) (not .Values.secrets.redisUrl) }}
{{- fail "redis.enabled with secrets.create needs secrets.redisUrl (or redis.existingSecret)" }}
{{- end }}
{{- end }}
{{- if and .Values.model.download.enabled (not .Values.model.download.repo) }}
{{- fail "model.download.enabled needs model.download.repo (owner/name on the Hugging Face Hub)" }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ images */}}

{{- define "secondpass.image" -}}
{{- $repo := .Values.image.repository }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.gpu.enabled }}
{{- $repo = .Values.gpu.image.repository | default $repo }}
{{- $tag = .Values.gpu.image.tag | default (printf "%s%s" (.Values.image.tag | default .Chart.AppVersion) .Values.gpu.image.tagSuffix) }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ secrets */}}

{{/* Name of the Secret holding the admin token and provider API keys, or "" when none. */}}
{{- define "secondpass.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.create }}
{{- printf "%s-secrets" (include "secondpass.fullname" .) }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ model */}}

{{- define "secondpass.modelVolumeNeeded" -}}
{{- if or .Values.model.persistence.enabled .Values.model.download.enabled }}true{{ end }}
{{- end }}

{{- define "secondpass.modelClaimName" -}}
{{- .Values.model.persistence.existingClaim | default (printf "%s-model" (include "secondpass.fullname" .)) }}
{{- end }}

{{/* The directory given to the reranker as model_dir. */}}
{{- define "secondpass.modelDir" -}}
{{- $m := .Values.model }}
{{- if $m.modelDir }}
{{- $m.modelDir }}
{{- else if $m.download.enabled }}
{{- printf "%s/%s" (trimSuffix "/" $m.mountPath) ($m.download.dir | default (replace "/" "--" $m.download.repo)) }}
{{- else if $m.persistence.enabled }}
{{- if $m.persistence.path }}
{{- printf "%s/%s" (trimSuffix "/" $m.mountPath) (trimPrefix "/" $m.persistence.path) }}
{{- else }}
{{- $m.mountPath }}
{{- end }}
{{- else }}
{{- $m.imagePath }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ TOML */}}

{{/*
A small TOML writer for the `config` map. Helm's own toToml turns every YAML number
into a float (pool = 100.0, max_body_bytes = 3.3554432e+07); this one writes whole
numbers as integers. Scalars and lists of scalars become `key = value`, maps become
[tables]. Keys named in secretConfigKeys are refused: secrets go in secrets.*.
*/}}
{{- define "secondpass.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "secondpass.toml.value" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (floor $v) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) }}{{ $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}{{ $items = append $items (include "secondpass.toml.value" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "map" $v }}
{{- fail "config: maps inside lists (arrays of tables) are not supported; use configToml" }}
{{- else }}
{{- fail (printf "config: cannot write a %s as TOML" (kindOf $v)) }}
{{- end }}
{{- end }}

{{- define "secondpass.toml.table" -}}
{{- $path := .path }}
{{- $m := .map }}
{{- $secretKeys := .secretKeys }}
{{- $scalars := list }}
{{- $tables := list }}
{{- range $k, $v := $m }}
{{- if has $k $secretKeys }}
{{- fail (printf "config: %q looks like a secret (%s); put it in secrets.* so that it reaches the pod as an environment variable from a Secret, never in the ConfigMap" (printf "%s%s" $path $k) $k) }}
{{- end }}
{{- if kindIs "map" $v }}{{ $tables = append $tables $k }}
{{- else if not (kindIs "invalid" $v) }}{{ $scalars = append $scalars $k }}
{{- end }}
{{- end }}
{{- if and $path (or $scalars (not $tables)) }}
{{ printf "\n[%s]" (trimSuffix "." $path) }}
{{- end }}
{{- range $scalars }}
{{ include "secondpass.toml.key" . }} = {{ include "secondpass.toml.value" (get $m .) }}
{{- end }}
{{- range $tables }}
{{- include "secondpass.toml.table" (dict "path" (printf "%s%s." $path (include "secondpass.toml.key" .)) "map" (get $m .) "secretKeys" $secretKeys) }}
{{- end }}
{{- end }}

{{/* The whole secondpass.toml. */}}
{{- define "secondpass.configToml" -}}
# secondpass configuration rendered by the Helm chart {{ include "secondpass.chart" . }}.
# Listen addresses, upstream URLs, model_dir and device come from environment
# variables (SECONDPASS__...) set by the chart; they win over this file.
{{- if .Values.configToml }}
{{ .Values.configToml }}
{{- else }}

{{ include "secondpass.toml.table" (dict "path" "" "map" .Values.config "secretKeys" .Values.secretConfigKeys) | trim }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ pod parts */}}

{{- define "secondpass.upstreamUrl" -}}
{{- if eq .Values.mode "pod-with-qdrant" }}{{ printf "http://localhost:%d" (int .Values.qdrant.ports.http) }}{{ else }}{{ .Values.upstream.url }}{{ end }}
{{- end }}

{{- define "secondpass.upstreamGrpcUrl" -}}
{{- if eq .Values.mode "pod-with-qdrant" }}{{ printf "http://localhost:%d" (int .Values.qdrant.ports.grpc) }}{{ else }}{{ .Values.upstream.grpcUrl }}{{ end }}
{{- end }}

{{/* Environment of the secondpass container. */}}
{{- define "secondpass.env" -}}
- name: SECONDPASS__SERVER__REST_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.rest) | quote }}
- name: SECONDPASS__SERVER__ADMIN_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.admin) | quote }}
- name: SECONDPASS__UPSTREAM__URL
  value: {{ include "secondpass.upstreamUrl" . | quote }}
{{- if .Values.grpc.enabled }}
- name: SECONDPASS__SERVER__GRPC_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPorts.grpc) | quote }}
- name: SECONDPASS__UPSTREAM__GRPC_URL
  value: {{ include "secondpass.upstreamGrpcUrl" . | quote }}
{{- end }}
{{- if .Values.model.setModelDir }}
- name: {{ printf "SECONDPASS__RERANKERS__%s__MODEL_DIR" (upper .Values.model.reranker) }}
  value: {{ include "secondpass.modelDir" . | quote }}
{{- end }}
{{- if .Values.gpu.enabled }}
- name: {{ printf "SECONDPASS__RERANKERS__%s__DEVICE" (upper .Values.model.reranker) }}
  value: {{ .Values.gpu.device | quote }}
{{- end }}
{{- $secret := include "secondpass.secretName" . }}
{{- if $secret }}
{{- if and .Values.secrets.adminTokenEnv (or .Values.secrets.existingSecret .Values.secrets.adminToken) }}
- name: {{ .Values.secrets.adminTokenEnv }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.adminTokenKey }}
      optional: {{ ternary "true" "false" (not .Values.secrets.create) }}
{{- end }}
{{- if .Values.secrets.create }}
{{- range $name, $_ := .Values.secrets.apiKeys }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $name }}
{{- end }}
{{- else }}
{{- range .Values.secrets.apiKeyEnvs }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.redis.enabled }}
- name: {{ .Values.redis.urlEnv }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | default $secret }}
      key: {{ .Values.redis.urlKey }}
- name: SECONDPASS__CACHE__REDIS__URL_ENV
  value: {{ .Values.redis.urlEnv | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The secondpass container. */}}
{{- define "secondpass.container" -}}
- name: secondpass
  image: {{ include "secondpass.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - serve
    - --config
    - /etc/secondpass/secondpass.toml
  ports:
    - name: rest
      containerPort: {{ .Values.containerPorts.rest }}
      protocol: TCP
    {{- if .Values.grpc.enabled }}
    - name: grpc
      containerPort: {{ .Values.containerPorts.grpc }}
      protocol: TCP
    {{- end }}
    - name: admin
      containerPort: {{ .Values.containerPorts.admin }}
      protocol: TCP
  env:
    {{- include "secondpass.env" . | nindent 4 }}
  {{- if or .Values.secrets.envFromSecret .Values.extraEnvFrom }}
  envFrom:
    {{- if .Values.secrets.envFromSecret }}
    - secretRef:
        name: {{ required "secrets.envFromSecret needs secrets.existingSecret or secrets.create" (include "secondpass.secretName" .) }}
    {{- end }}
    {{- with .Values.extraEnvFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- if .Values.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- omit .Values.startupProbe "enabled" | toYaml | nindent 4 }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- omit .Values.livenessProbe "enabled" | toYaml | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    {{- omit .Values.readinessProbe "enabled" | toYaml | nindent 4 }}
  {{- $resources := deepCopy (.Values.resources | default dict) }}
  {{- if .Values.gpu.enabled }}
  {{- $limits := get $resources "limits" | default dict }}
  {{- $_ := set $limits .Values.gpu.resourceName (.Values.gpu.count | int) }}
  {{- $_ := set $resources "limits" $limits }}
  {{- end }}
  {{- with $resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/secondpass
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- if include "secondpass.modelVolumeNeeded" . }}
    - name: model
      mountPath: {{ .Values.model.mountPath }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Init container that fetches the model from the Hugging Face Hub. */}}
{{- define "secondpass.modelDownloadContainer" -}}
{{- $d := .Values.model.download }}
- name: model-download
  image: {{ printf "%s:%s" $d.image.repository $d.image.tag | quote }}
  imagePullPolicy: {{ $d.image.pullPolicy }}
  command: ["/bin/sh", "-c"]
  args:
    - |
      set -eu
      want="$HF_REPO@$HF_REVISION"
      marker="$MODEL_DIR/.secondpass-download"
      if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want $HF_FILES" ]; then
        echo "model $want already in $MODEL_DIR"; exit 0
      fi
      mkdir -p "$MODEL_DIR"
      for f in $HF_FILES; do
        mkdir -p "$MODEL_DIR/$(dirname "$f")"
        if [ -n "${HF_TOKEN:-}" ]; then set -- -H "Authorization: Bearer $HF_TOKEN"; else set --; fi
        echo "downloading $HF_ENDPOINT/$HF_REPO/resolve/$HF_REVISION/$f"
        curl -fsSL --retry 5 --retry-all-errors --connect-timeout 20 "$@" \
          -o "$MODEL_DIR/$f.part" "$HF_ENDPOINT/$HF_REPO/resolve/$HF_REVISION/$f"
        mv "$MODEL_DIR/$f.part" "$MODEL_DIR/$f"
      done
      echo "$want $HF_FILES" > "$marker"
      echo "model $want ready in $MODEL_DIR"
  env:
    - name: HF_ENDPOINT
      value: {{ trimSuffix "/" $d.endpoint | quote }}
    - name: HF_REPO
      value: {{ $d.repo | quote }}
    - name: HF_REVISION
      value: {{ $d.revision | quote }}
    - name: HF_FILES
      value: {{ join " " $d.files | quote }}
    - name: MODEL_DIR
      value: {{ include "secondpass.modelDir" . | quote }}
    {{- if $d.tokenSecret.name }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $d.tokenSecret.name }}
          key: {{ $d.tokenSecret.key }}
          optional: {{ $d.tokenSecret.optional }}
    {{- end }}
    {{- with $d.proxyEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $d.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: model
      mountPath: {{ .Values.model.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* Qdrant in the same pod (mode pod-with-qdrant). */}}
{{- define "secondpass.qdrantContainer" -}}
{{- $q := .Values.qdrant }}
- name: qdrant
  image: {{ printf "%s:%s" $q.image.repository $q.image.tag | quote }}
  imagePullPolicy: {{ $q.image.pullPolicy }}
  ports:
    - name: qdrant-http
      containerPort: {{ $q.ports.http }}
      protocol: TCP
    - name: qdrant-grpc
      containerPort: {{ $q.ports.grpc }}
      protocol: TCP
  env:
    - name: QDRANT__SERVICE__HTTP_PORT
      value: {{ $q.ports.http | quote }}
    - name: QDRANT__SERVICE__GRPC_PORT
      value: {{ $q.ports.grpc | quote }}
    - name: QDRANT__STORAGE__STORAGE_PATH
      value: /qdrant/storage
    - name: QDRANT__STORAGE__SNAPSHOTS_PATH
      value: /qdrant/snapshots
    - name: QDRANT__STORAGE__TEMP_PATH
      value: /tmp
    - name: QDRANT_INIT_FILE_PATH
      value: /qdrant/init/.qdrant-initialized
    - name: QDRANT__TELEMETRY_DISABLED
      value: {{ $q.telemetryDisabled | quote }}
    {{- if $q.apiKeySecret.name }}
    - name: QDRANT__SERVICE__API_KEY
      valueFrom:
        secretKeyRef:
          name: {{ $q.apiKeySecret.name }}
          key: {{ $q.apiKeySecret.key }}
    {{- end }}
    {{- with $q.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  startupProbe:
    httpGet:
      path: /readyz
      port: qdrant-http
    periodSeconds: 5
    failureThreshold: 60
  livenessProbe:
    httpGet:
      path: /livez
      port: qdrant-http
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 6
  readinessProbe:
    httpGet:
      path: /readyz
      port: qdrant-http
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 3
  {{- with $q.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $q.securityContext | nindent 4 }}
  volumeMounts:
    - name: qdrant-storage
      mountPath: /qdrant/storage
    - name: qdrant-snapshots
      mountPath: /qdrant/snapshots
    - name: qdrant-init
      mountPath: /qdrant/init
    - name: qdrant-tmp
      mountPath: /tmp
{{- end }}

{{/* Pod template shared by the Deployment (standalone) and the StatefulSet (pod-with-qdrant). */}}
{{- define "secondpass.podTemplate" -}}
metadata:
  annotations:
    checksum/config: {{ include "secondpass.configToml" . | sha256sum }}
    {{- if .Values.secrets.create }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "secondpass.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "secondpass.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if and .Values.gpu.enabled .Values.gpu.runtimeClassName }}
  runtimeClassName: {{ .Values.gpu.runtimeClassName }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- if or .Values.model.download.enabled .Values.extraInitContainers }}
  initContainers:
    {{- if .Values.model.download.enabled }}
    {{- include "secondpass.modelDownloadContainer" . | nindent 4 }}
    {{- end }}
    {{- with .Values.extraInitContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    {{- if eq .Values.mode "pod-with-qdrant" }}
    {{- include "secondpass.qdrantContainer" . | nindent 4 }}
    {{- end }}
    {{- include "secondpass.container" . | nindent 4 }}
  volumes:
    - name: config
      configMap:
        name: {{ include "secondpass.fullname" . }}
    - name: tmp
      {{- if .Values.tmpVolume.sizeLimit }}
      emptyDir:
        sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- if .Values.model.persistence.enabled }}
    - name: model
      persistentVolumeClaim:
        claimName: {{ include "secondpass.modelClaimName" . }}
    {{- else if .Values.model.download.enabled }}
    - name: model
      {{- if .Values.model.download.sizeLimit }}
      emptyDir:
        sizeLimit: {{ .Values.model.download.sizeLimit }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
    {{- if eq .Values.mode "pod-with-qdrant" }}
    - name: qdrant-snapshots
      emptyDir: {}
    - name: qdrant-init
      emptyDir: {}
    - name: qdrant-tmp
      emptyDir: {}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $nodeSelector := deepCopy (.Values.nodeSelector | default dict) }}
  {{- $tolerations := .Values.tolerations | default list }}
  {{- if .Values.gpu.enabled }}
  {{- $nodeSelector = mergeOverwrite $nodeSelector (.Values.gpu.nodeSelector | default dict) }}
  {{- $tolerations = concat $tolerations (.Values.gpu.tolerations | default list) }}
  {{- end }}
  {{- with $nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $spread := list }}
  {{- if .Values.topologySpread.enabled }}
  {{- range .Values.topologySpread.topologyKeys }}
  {{- $spread = append $spread (dict "maxSkew" (int $.Values.topologySpread.maxSkew) "topologyKey" . "whenUnsatisfiable" $.Values.topologySpread.whenUnsatisfiable "labelSelector" (dict "matchLabels" (include "secondpass.selectorLabels" $ | fromYaml))) }}
  {{- end }}
  {{- end }}
  {{- $spread = concat $spread (.Values.topologySpreadConstraints | default list) }}
  {{- with $spread }}
  topologySpreadConstraints:
    {{- tpl (toYaml .) $ | nindent 4 }}
  {{- end }}
{{- end }}
