{{/*
Chart name.
*/}}
{{- define "podstamp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name.
*/}}
{{- define "podstamp.fullname" -}}
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

{{- define "podstamp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podstamp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podstamp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "podstamp.labels" -}}
helm.sh/chart: {{ include "podstamp.chart" . }}
{{ include "podstamp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-proxy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "podstamp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "podstamp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "podstamp.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "podstamp.hostNetwork" -}}
{{- if eq .Values.networkMode "hostNetwork" }}true{{- end }}
{{- end }}

{{/*
podstamp.needs: what the enrichment config reads besides pods, as a dict rendered to JSON
(namespaces, clusterUID, nodes, workloads, workloadMetadata: bool). Mirrors
enrich.Config.Needs() and what the pod cache then reads, in podstamp's layout and in the
k8sattributes processor's (extract.labels/annotations/metadata, optionally under
k8sattributes:):
  - labels/annotations with from: namespace          -> get namespaces
  - k8s.cluster.uid                                  -> get namespace kube-system
  - labels/annotations with from: node, k8s.node.uid -> get nodes (also rbac.getNodes)
  - any k8s.<workload>.uid                           -> get replicasets and jobs: a Deployment's
    UID is read from its ReplicaSet, a CronJob's from its Job; the other workload UIDs come
    from the pod's own owner references.
  - labels/annotations with from: <workload>         -> get deployments, replicasets,
    statefulsets, daemonsets, jobs and cronjobs
*/}}
{{- define "podstamp.needs" -}}
{{- $cfg := .Values.config | default dict }}
{{- if hasKey $cfg "k8sattributes" }}{{ $cfg = get $cfg "k8sattributes" | default dict }}{{ end }}
{{- $ex := $cfg.extract | default dict }}
{{- $ns := false }}
{{- $cluster := false }}
{{- $node := .Values.rbac.getNodes }}
{{- $wl := false }}
{{- $wlmeta := false }}
{{- range $rule := concat ($cfg.labels | default list) ($cfg.annotations | default list) ($ex.labels | default list) ($ex.annotations | default list) }}
{{- $from := toString $rule.from }}
{{- if eq $from "namespace" }}{{ $ns = true }}{{ end }}
{{- if eq $from "node" }}{{ $node = true }}{{ end }}
{{- if has $from (list "deployment" "replicaset" "statefulset" "daemonset" "job" "cronjob") }}{{ $wlmeta = true }}{{ end }}
{{- end }}
{{- range $key := concat ($cfg.metadata | default list) ($ex.metadata | default list) }}
{{- if eq $key "k8s.node.uid" }}{{ $node = true }}
{{- else if eq $key "k8s.cluster.uid" }}{{ $cluster = true }}
{{- else if and (hasSuffix ".uid" $key) (ne $key "k8s.pod.uid") }}{{ $wl = true }}
{{- end }}
{{- end }}
{{- dict "namespaces" $ns "clusterUID" $cluster "nodes" $node "workloads" $wl "workloadMetadata" $wlmeta | toJson }}
{{- end }}

{{/*
podstamp.memBytes: a Kubernetes memory quantity (e.g. 256Mi, 1.5Gi, 500M, 268435456) in bytes.
*/}}
{{- define "podstamp.memBytes" -}}
{{- if not (kindIs "string" .) }}
{{- /* a plain number of bytes (YAML numbers arrive as float64) */ -}}
{{- float64 . | floor | int64 }}
{{- else }}
{{- $q := . }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$" $q) }}
{{- fail (printf "resources.limits.memory %q: cannot derive GOMEMLIMIT from it; set goMemLimit.value or goMemLimit.enabled=false" $q) }}
{{- end }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $unit := trimPrefix $num $q }}
{{- $factors := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- mulf (float64 $num) (get $factors $unit) | floor | int64 }}
{{- end }}
{{- end }}

{{/*
podstamp.goMemLimit: GOMEMLIMIT value, or empty when it should not be set.
*/}}
{{- define "podstamp.goMemLimit" -}}
{{- if .Values.goMemLimit.value }}
{{- .Values.goMemLimit.value }}
{{- else if and .Values.goMemLimit.enabled .Values.resources.limits .Values.resources.limits.memory }}
{{- $bytes := include "podstamp.memBytes" .Values.resources.limits.memory | float64 }}
{{- divf (mulf $bytes .Values.goMemLimit.percent) 100 | floor | int64 }}
{{- end }}
{{- end }}

{{/*
podstamp.size: a byte size value as a flag argument. Strings ("64MiB") pass unchanged;
numbers (YAML numbers arrive as float64) are printed as integers, never as 6.7e+07.
*/}}
{{- define "podstamp.size" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ int64 . }}{{ end }}
{{- end }}
