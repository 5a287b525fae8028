{{/*
The driver name: fixed, since volumes, topology keys and CRDs all carry it.
*/}}
{{- define "vduse-csi.driverName" -}}
csi.vduse.dev
{{- end }}

{{/* The topology key the plugin reports in NodeGetInfo and CreateVolume. */}}
{{- define "vduse-csi.topologyKey" -}}
topology.csi.vduse.dev/node
{{- end }}

{{/*
The ConfigMap in the release namespace where each node plugin reports its free space (cluster
mode): fixed in the plugin (src/k8s/node-capacity.ts).
*/}}
{{- define "vduse-csi.capacityConfigMap" -}}
vduse-csi-capacity
{{- end }}

{{- define "vduse-csi.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: the release name, or release-chart when the release name does
not already contain the chart name. Kept short enough for the suffixes added below.
*/}}
{{- define "vduse-csi.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "vduse-csi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vduse-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vduse-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vduse-csi.labels" -}}
helm.sh/chart: {{ include "vduse-csi.chart" . }}
{{ include "vduse-csi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vduse-csi
{{- end }}

{{/* Labels of one component's objects: (dict "context" $ "component" "controller"). */}}
{{- define "vduse-csi.componentLabels" -}}
{{ include "vduse-csi.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vduse-csi.componentSelectorLabels" -}}
{{ include "vduse-csi.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* repository:tag of an image block ({repository, tag}); our own image defaults to appVersion. */}}
{{- define "vduse-csi.image" -}}
{{- $tag := .image.tag | default .default -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end }}

{{- define "vduse-csi.pluginImage" -}}
{{- include "vduse-csi.image" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end }}

{{- define "vduse-csi.controllerServiceAccount" -}}
{{- printf "%s-controller" (include "vduse-csi.fullname" .) -}}
{{- end }}

{{- define "vduse-csi.nodeServiceAccount" -}}
{{- printf "%s-node" (include "vduse-csi.fullname" .) -}}
{{- end }}

{{/* Where the node plugin's per-pod socket directories live on the host. */}}
{{- define "vduse-csi.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletDir) (include "vduse-csi.driverName" .) -}}
{{- end }}

{{/* The ConfigMap of Ceph clusters the plugins read (--ceph-clusters); empty when there is none. */}}
{{- define "vduse-csi.cephClustersConfigMap" -}}
{{- if .Values.ceph.existingClustersConfigMap -}}
{{- .Values.ceph.existingClustersConfigMap -}}
{{- else if .Values.ceph.clusters -}}
{{- printf "%s-ceph-clusters" (include "vduse-csi.fullname" .) -}}
{{- end -}}
{{- end }}

{{/* Where the plugins mount it. */}}
{{- define "vduse-csi.cephClustersDir" -}}
/etc/vduse-csi/ceph
{{- end }}

{{/* Fails the render when more than one StorageClass claims to be the default. */}}
{{- define "vduse-csi.checkStorageClasses" -}}
{{- $defaults := 0 -}}
{{- $names := dict -}}
{{- range .Values.storageClasses -}}
{{- if .default }}{{ $defaults = add1 $defaults }}{{ end -}}
{{- if hasKey $names .name }}{{ fail (printf "storageClasses: %s is listed twice" .name) }}{{ end -}}
{{- $_ := set $names .name true -}}
{{- end -}}
{{- if gt $defaults 1 }}{{ fail "storageClasses: at most one class may have default: true" }}{{ end -}}
{{- end }}

{{/* Fails the render when two ports of the node pod (host network: ports of the node) are the same. */}}
{{- define "vduse-csi.checkNodePorts" -}}
{{- $ports := list .Values.node.healthPort .Values.node.registrarHealthPort -}}
{{- if .Values.metrics.enabled }}{{ $ports = concat $ports (list .Values.node.metricsPort .Values.deviceDaemon.metricsPort) }}{{ end -}}
{{- if ne (len $ports) (len (uniq $ports)) }}{{ fail (printf "node.healthPort, .registrarHealthPort, .metricsPort and deviceDaemon.metricsPort must differ (the node's ports), got %v" $ports) }}{{ end -}}
{{- end }}

{{/*
The plugin container's probes, answered by the plugin's --health-address (src/csi/health.ts).
- startupProbe: a slow node (or software emulation) may take minutes to start Node.js and the
  plugin; liveness only counts once /healthz first answered (up to 10 minutes).
- livenessProbe: /healthz fails only when the plugin no longer answers Probe on its CSI socket.
- readinessProbe: /readyz fails while the plugin cannot serve volumes (a kernel module missing,
  no vdpa netlink): the pod shows not ready, with the reason in the probe's answer, and is not
  restarted for it.
dict: host (the address kubelet probes; empty: the pod's IP).
*/}}
{{- define "vduse-csi.pluginProbes" -}}
{{- $get := dict "path" "/healthz" "port" "healthz" }}
{{- if .host }}{{- $_ := set $get "host" .host }}{{- end }}
startupProbe:
  httpGet:
    {{- toYaml $get | nindent 4 }}
  periodSeconds: 5
  timeoutSeconds: 10
  failureThreshold: 120
livenessProbe:
  httpGet:
    {{- toYaml $get | nindent 4 }}
  periodSeconds: 10
  timeoutSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet:
    {{- toYaml (set (deepCopy $get) "path" "/readyz") | nindent 4 }}
  periodSeconds: 10
  timeoutSeconds: 10
  failureThreshold: 1
{{- end }}

{{/*
The init script of the pods that need the kernel modules: vduse (VDUSE devices, /dev/vduse/control)
and virtio_vdpa (binds them to the kernel's virtio-blk driver), loaded unless
node.loadKernelModules is false. A failure says why in the pod's termination message.
*/}}
{{- define "vduse-csi.loadModulesScript" -}}
set -u
fail() {
  echo "$1" | tee /dev/termination-log >&2
  exit 1
}
{{- if .Values.node.loadKernelModules }}
for module in vduse virtio_vdpa; do
  if [ -d "/sys/module/$module" ]; then
    echo "kernel module $module: loaded"
    continue
  fi
  modprobe "$module" ||
    fail "vduse-csi: cannot load kernel module $module on node $NODE_NAME (kernel $(uname -r)): modprobe $module failed. The node needs Linux >= 5.15 with CONFIG_VDPA_USER (vduse) and CONFIG_VIRTIO_VDPA (virtio_vdpa), and the modules under /lib/modules/$(uname -r)."
  echo "kernel module $module: loaded by modprobe"
done
{{- end }}
{{- end }}

{{/*
The init container of the node's pods: loads the kernel modules, then runs .script (may be empty)
with .mounts (a list of volumeMounts) besides /lib/modules. dict: context, script, mounts.
*/}}
{{- define "vduse-csi.prepareContainer" -}}
{{- $values := .context.Values -}}
- name: prepare
  image: {{ include "vduse-csi.pluginImage" .context }}
  imagePullPolicy: {{ $values.image.pullPolicy }}
  command: ["/bin/sh", "-c"]
  args:
    - |
      {{- include "vduse-csi.loadModulesScript" .context | nindent 6 }}
      {{- with .script }}
      {{- . | nindent 6 }}
      {{- end }}
  env:
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
  securityContext:
    privileged: true
    runAsUser: 0
  resources:
    requests: { cpu: 10m, memory: 16Mi }
    limits: { memory: 64Mi }
  {{- $mounts := .mounts | default list }}
  {{- if $values.node.loadKernelModules }}
  {{- $mounts = prepend $mounts (dict "name" "lib-modules" "mountPath" "/lib/modules" "readOnly" true) }}
  {{- end }}
  {{- with $mounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
