{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "gatehouse.fullname" -}}
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

{{- define "gatehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ include "gatehouse.chart" . }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gatehouse
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Name of the Secret the pod reads: the existing one, or the chart's. */}}
{{- define "gatehouse.secretName" -}}
{{- .Values.existingSecret.name | default (include "gatehouse.fullname" .) }}
{{- end }}

{{/*
Where the ZITADEL application key (private_key_jwt) comes from, as JSON
{"secret": <Secret name>, "key": <key in it>}, or {} for none: zitadel.keySecret wins,
then the chart's own Secret (zitadel.key), then an existing Secret's
existingSecret.keys.zitadelKey (empty by default: once ZITADEL_KEY_FILE is set the file
must exist, so an existing Secret's key is mounted only when named). The Deployment
mounts it as a file.
*/}}
{{- define "gatehouse.zitadelKeyRef" -}}
{{- $ref := dict }}
{{- if .Values.zitadel.keySecret.name }}
{{- $ref = dict "secret" .Values.zitadel.keySecret.name "key" .Values.zitadel.keySecret.key }}
{{- else if and (not .Values.existingSecret.name) .Values.zitadel.key }}
{{- $ref = dict "secret" (include "gatehouse.fullname" .) "key" "ZITADEL_KEY" }}
{{- else if and .Values.existingSecret.name .Values.existingSecret.keys.zitadelKey }}
{{- $ref = dict "secret" .Values.existingSecret.name "key" .Values.existingSecret.keys.zitadelKey }}
{{- end }}
{{- $ref | toJson }}
{{- end }}

{{/*
The application key file in the container (ZITADEL_KEY_FILE): a read-only secret volume.
*/}}
{{- define "gatehouse.zitadelKeyDir" -}}/var/run/secrets/gatehouse{{- end }}
{{- define "gatehouse.zitadelKeyFile" -}}{{ include "gatehouse.zitadelKeyDir" . }}/zitadel-key.json{{- end }}

{{/*
Public base URL: publicURL, else the Ingress host (https with TLS), else the first
HTTPRoute hostname (https), else http://localhost:3000 (port-forward / Tilt).
*/}}
{{- define "gatehouse.publicURL" -}}
{{- if .Values.publicURL }}
{{- .Values.publicURL | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- else if and .Values.httpRoute.enabled .Values.httpRoute.hostnames }}
{{- printf "https://%s" (first .Values.httpRoute.hostnames) }}
{{- else }}
{{- printf "http://localhost:%d" (int .Values.ports.http) }}
{{- end }}
{{- end }}

{{- define "gatehouse.callbackURL" -}}
{{- .Values.zitadel.callbackURL | default (printf "%s/auth/callback" (include "gatehouse.publicURL" .)) }}
{{- end }}

{{- define "gatehouse.postLogoutURL" -}}
{{- .Values.zitadel.postLogoutURL | default (printf "%s/auth/logout/callback" (include "gatehouse.publicURL" .)) }}
{{- end }}

{{/*
Seconds in a Go duration with one unit ("500ms", "5s", "2m"), rounded up.
The schema only admits that form.
*/}}
{{- define "gatehouse.durationSeconds" -}}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- if eq $unit "ms" }}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "m" }}{{ mul $n 60 }}
{{- else }}{{ $n }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds = ceil(SHUTDOWN_DELAY) + ceil(SHUTDOWN_TIMEOUT) + margin. */}}
{{- define "gatehouse.terminationGracePeriodSeconds" -}}
{{- $d := include "gatehouse.durationSeconds" .Values.shutdown.delay | int }}
{{- $t := include "gatehouse.durationSeconds" .Values.shutdown.timeout | int }}
{{- add $d $t (int .Values.shutdown.extraGracePeriodSeconds) }}
{{- end }}

{{/* Fewest pods that run at once: a PDB only makes sense above one. */}}
{{- define "gatehouse.minPods" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
Cross-field checks the schema cannot express; each fails the install with a clear message.
*/}}
{{- define "gatehouse.validate" -}}
{{- if not .Values.zitadel.domain }}
{{- fail "\n\ngatehouse: zitadel.domain is required: the issuer URL of your ZITADEL instance, e.g. --set zitadel.domain=https://my-instance.zitadel.cloud" }}
{{- end }}
{{- if not .Values.existingSecret.name }}
{{- if or (not .Values.zitadel.clientId) (not .Values.session.secret) }}
{{- fail "\n\ngatehouse: no secrets given. Either set zitadel.clientId and session.secret (at least 32 bytes, e.g. $(openssl rand -base64 48)), or set existingSecret.name to a Secret holding ZITADEL_CLIENT_ID and SESSION_SECRET (key names: existingSecret.keys)." }}
{{- end }}
{{- end }}
{{- $clientAuth := list }}
{{- range $name, $set := dict "zitadel.clientSecret" .Values.zitadel.clientSecret "zitadel.key" .Values.zitadel.key "zitadel.keySecret.name" .Values.zitadel.keySecret.name }}
{{- if $set }}{{ $clientAuth = append $clientAuth $name }}{{ end }}
{{- end }}
{{- if gt (len $clientAuth) 1 }}
{{- fail (printf "\n\ngatehouse: %s are set; set at most one: a client secret (zitadel.clientSecret), an application key (zitadel.key inline, or zitadel.keySecret.name for a Secret holding it), or none for a public PKCE client." (join ", " (sortAlpha $clientAuth))) }}
{{- end }}
{{- if eq .Values.session.store "redis" }}
{{- $r := .Values.redis }}
{{- if and (eq $r.mode "standalone") (not $r.url) }}
{{- fail "\n\ngatehouse: session.store=redis needs redis.url (e.g. redis://redis-master.redis:6379/0), or redis.mode=sentinel or cluster." }}
{{- end }}
{{- if and (ne $r.mode "standalone") $r.url }}
{{- fail (printf "\n\ngatehouse: redis.url is for redis.mode=standalone; with %s leave it empty (redis.%s.addrs)." $r.mode $r.mode) }}
{{- end }}
{{- if and (eq $r.mode "sentinel") (or (not $r.sentinel.masterName) (not $r.sentinel.addrs)) }}
{{- fail "\n\ngatehouse: redis.mode=sentinel needs redis.sentinel.masterName and redis.sentinel.addrs (host:port of each sentinel)." }}
{{- end }}
{{- if and (eq $r.mode "cluster") (not $r.cluster.addrs) }}
{{- fail "\n\ngatehouse: redis.mode=cluster needs redis.cluster.addrs (host:port of one or more nodes)." }}
{{- end }}
{{- if and $r.tls.clientCert (not $r.tls.secretName) }}
{{- fail "\n\ngatehouse: redis.tls.clientCert needs redis.tls.secretName (a Secret with the client certificate and key)." }}
{{- end }}
{{- if and $r.tls.secretName (not $r.tls.enabled) (not (hasPrefix "rediss://" $r.url)) }}
{{- fail "\n\ngatehouse: redis.tls.secretName is set but TLS is off: set redis.tls.enabled=true." }}
{{- end }}
{{- end }}
{{- if and (eq .Values.session.store "memory") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "\n\ngatehouse: session.store=memory keeps sessions in one pod; use replicaCount=1 without autoscaling, or session.store=cookie/redis." }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "\n\ngatehouse: autoscaling.minReplicas must not exceed autoscaling.maxReplicas." }}
{{- end }}
{{- if and .Values.otel.enabled (not .Values.otel.endpoint) }}
{{- fail "\n\ngatehouse: otel.enabled needs otel.endpoint (e.g. http://otel-collector.observability:4318)." }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "\n\ngatehouse: metrics.serviceMonitor.enabled needs metrics.enabled." }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "\n\ngatehouse: httpRoute.enabled needs at least one httpRoute.parentRefs entry." }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "\n\ngatehouse: ingress.enabled needs ingress.host." }}
{{- end }}
{{- if eq .Values.ports.http .Values.ports.admin }}
{{- fail "\n\ngatehouse: ports.http and ports.admin must differ." }}
{{- end }}
{{- end }}

{{/*
Forward-auth (docs/FORWARD-AUTH.md): where proxies in the cluster reach Gatehouse.
*/}}
{{- define "gatehouse.internalURL" -}}
{{- .Values.forwardAuth.internalURL | default (printf "http://%s.%s.svc.cluster.local:%d" (include "gatehouse.fullname" .) .Release.Namespace (int .Values.service.port)) | trimSuffix "/" }}
{{- end }}

{{/* The identity headers every 200 of Gatehouse carries (internal/forward). */}}
{{- define "gatehouse.identityHeaders" -}}
X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Preferred-Username,X-Auth-Request-Groups,X-Auth-Request-Access-Token,X-Gatehouse-Assertion
{{- end }}

{{/* The session cookie's name (session.CookieOptions.Name). */}}
{{- define "gatehouse.sessionCookieName" -}}
{{- if not (hasPrefix "https://" (include "gatehouse.callbackURL" .)) }}gatehouse
{{- else if .Values.forwardAuth.cookieDomain }}__Secure-gatehouse
{{- else }}__Host-gatehouse
{{- end }}
{{- end }}
