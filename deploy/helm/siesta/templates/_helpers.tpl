{{/* Labels on every object: the base's labels plus Helm's. */}}
{{- define "siesta.labels" -}}
app.kubernetes.io/name: siesta
app.kubernetes.io/part-of: siesta
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels of one component: stable across upgrades, never add to them. */}}
{{- define "siesta.selector" -}}
app.kubernetes.io/name: siesta
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "siesta.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The restricted Pod Security Standard, container level. */}}
{{- define "siesta.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: ["ALL"]}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "siesta.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* topologySpreadConstraints for component `.component` */}}
{{- define "siesta.spread" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "siesta.selector" . | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "siesta.selector" . | nindent 6 }}
{{- end }}
