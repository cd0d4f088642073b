#!/usr/bin/env bash
# scripts/deploy-check.sh — prove the deployment side: chart, manifests, image, Tiltfile.
#
# Needs the tools from scripts/tools.sh (run it first; it is idempotent). Stages:
#   lint        helm lint --strict with each charts/gatehouse/ci/*-values.yaml
#   kubeconform helm template (each ci values file) and k8s/ → kubeconform -strict against
#               schemas generated offline from the pinned Kubernetes swagger.json
#   k8s-sync    k8s/ equals the chart rendered with defaults (scripts/gen-k8s.sh --check)
#   unittest    helm-unittest suites in charts/gatehouse/tests
#   dockerfile  go test ./internal/deploycheck (Dockerfile rules)
#   cluster     kwok cluster on a real kube-apiserver/etcd: helm install --wait, secrets as
#               env in the pod spec, secret change rolls the Deployment, CRD-backed
#               resources and k8s/ accepted by server-side dry-run, helm uninstall cleans up
#   image       static binary; from-scratch OCI image (buildah) → umoci → runc as non-root
#               with a read-only root: /healthz, `gatehouse healthcheck`, clean SIGTERM
#   tilt        `tilt ci` against the kwok cluster (podman Docker API + local registry)
#
#   scripts/deploy-check.sh                 # all stages
#   scripts/deploy-check.sh lint unittest   # some stages (cluster is started when needed)
#   KEEP=1 scripts/deploy-check.sh cluster  # keep the work folder for debugging
#
# Every stage prints its duration; any failure exits non-zero; everything started here is
# stopped on exit (trap).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
eval "$(scripts/tools.sh --env)"
CHART=charts/gatehouse
KV="${GATEHOUSE_KUBE_VERSION#v}"
WORK="$(mktemp -d /tmp/gatehouse-deploy-check.XXXXXX)"
CLUSTER="gh-ci-$$"
# Keep every tool's state in the work folder: kwokctl would otherwise add contexts to
# ~/.kube/config, kubectl and helm write caches under $HOME.
export KWOK_WORKDIR="$WORK/kwok" KUBECONFIG="$WORK/kubeconfig" KUBECACHEDIR="$WORK/kube-cache"
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
export HOME="${HOME:-/root}"
SUMMARY=()
CLEANUPS=()

log() { printf '[deploy-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[deploy-check] FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  set +e
  if [[ -n "$CURRENT_STAGE" ]]; then
    SUMMARY+=("$(printf '%-12s FAILED  %4ss' "$CURRENT_STAGE" $((SECONDS - STAGE_T0)))")
    log "=== stage $CURRENT_STAGE: FAILED after $((SECONDS - STAGE_T0))s"
  fi
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" >/dev/null 2>&1; done
  if [[ -n "${KEEP:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  echo
  echo "deploy-check summary:"
  for s in "${SUMMARY[@]}"; do echo "  $s"; done
  if ((rc == 0)); then echo "deploy-check: all requested stages passed"; else echo "deploy-check: FAILED (exit $rc)"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stages run in the main shell (not under `if`, which would switch off `set -e` inside
# them): the first failing command ends the run, and the EXIT trap records the stage.
CURRENT_STAGE="" STAGE_T0=0
stage() {
  CURRENT_STAGE=$1 STAGE_T0=$SECONDS
  shift
  log "=== stage $CURRENT_STAGE"
  "$@"
  SUMMARY+=("$(printf '%-12s ok      %4ss' "$CURRENT_STAGE" $((SECONDS - STAGE_T0)))")
  log "=== stage $CURRENT_STAGE: ok in $((SECONDS - STAGE_T0))s"
  CURRENT_STAGE=""
}
skip() { SUMMARY+=("$(printf '%-12s SKIPPED (%s)' "$1" "$2")"); log "=== stage $1: SKIPPED: $2"; }

need() { for b in "$@"; do command -v "$b" >/dev/null || die "$b not found: run scripts/tools.sh"; done; }

values_files() { ls "$CHART"/ci/*-values.yaml; }

# ------------------------------------------------------------------ static stages
st_lint() {
  need helm
  local f
  for f in $(values_files); do
    helm lint --strict --kube-version "$KV" "$CHART" -f "$f" | sed 's/^/  /'
  done
  # Without secrets and existingSecret the chart must refuse to render, clearly.
  local out
  if out=$(helm template gh "$CHART" --kube-version "$KV" --set zitadel.domain=https://x.example 2>&1); then
    die "chart rendered without any secret"
  fi
  grep -q "no secrets given" <<<"$out" || die "missing-secret message not shown: $out"
}

kubeconform_strict() {
  kubeconform -strict -summary -kubernetes-version "$KV" \
    -schema-location "$GATEHOUSE_SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "$@"
}

st_kubeconform() {
  need helm kubeconform kubectl
  [[ -d "$GATEHOUSE_SCHEMAS/v$KV-standalone-strict" ]] || die "no schemas in $GATEHOUSE_SCHEMAS: run scripts/tools.sh schemas"
  local f out
  for f in $(values_files); do
    out="$WORK/render-$(basename "$f" .yaml).yaml"
    helm template gh "$CHART" --kube-version "$KV" -f "$f" >"$out"
    printf '  %-45s ' "$(basename "$f"):"
    kubeconform_strict "$out"
  done
  # Tilt's dev values, with what the Tiltfile adds from .env.
  printf '  %-45s ' "values-dev.yaml (Tilt):"
  helm template gatehouse "$CHART" --kube-version "$KV" -f "$CHART/values-dev.yaml" \
    --set zitadel.domain=https://dev.zitadel.example --set existingSecret.name=gatehouse-dev-env \
    --set otel.endpoint=http://jaeger:4318 >"$WORK/render-dev.yaml"
  kubeconform_strict "$WORK/render-dev.yaml"
  printf '  %-45s ' "k8s/ (kustomize build):"
  kubectl kustomize k8s/ >"$WORK/k8s.yaml"
  kubeconform_strict "$WORK/k8s.yaml"
  # The checker itself must reject an unknown field (proves -strict + schemas bite).
  sed 's/^\(\s*\)automountServiceAccountToken: false/\1automountServiceAccountTokn: false/' \
    "$WORK/render-defaults-values.yaml" >"$WORK/typo.yaml"
  if kubeconform_strict "$WORK/typo.yaml" >/dev/null 2>&1; then die "kubeconform accepted an unknown field"; fi
}

st_k8s_sync() { scripts/gen-k8s.sh --check; }

st_unittest() {
  need helm
  helm plugin list | grep -q '^unittest' || die "helm-unittest plugin missing (HELM_PLUGINS=$HELM_PLUGINS)"
  helm unittest --color=false "$CHART" 2>&1 | sed 's/^/  /'
  return "${PIPESTATUS[0]}"
}

st_dockerfile() { go test -count=1 ./internal/deploycheck/; }

# ------------------------------------------------------------------ kwok cluster
CLUSTER_UP=""
cluster_up() {
  [[ -n "$CLUSTER_UP" ]] && return 0
  need kwokctl kwok kube-apiserver kube-controller-manager kube-scheduler kubectl etcd
  log "starting kwok cluster $CLUSTER (runtime binary, etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'))"
  CLEANUPS+=("kwokctl delete cluster --name '$CLUSTER'")
  # Every binary given explicitly: kwokctl's defaults are download URLs.
  cat >"$WORK/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: $GATEHOUSE_KUBE_VERSION
  etcdVersion: $(etcd --version | awk '/etcd Version/{print $3}')
  kubeApiserverBinary: $(command -v kube-apiserver)
  kubeControllerManagerBinary: $(command -v kube-controller-manager)
  kubeSchedulerBinary: $(command -v kube-scheduler)
  kubectlBinary: $(command -v kubectl)
  kwokControllerBinary: $(command -v kwok)
  etcdBinary: $(command -v etcd)
EOF
  kwokctl create cluster --name "$CLUSTER" --config "$WORK/kwokctl.yaml" --wait 2m \
    >"$WORK/kwok-create.log" 2>&1 || { cat "$WORK/kwok-create.log"; return 1; }
  [[ -s "$KUBECONFIG" ]] || kwokctl get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
  kwokctl scale node --name "$CLUSTER" --replicas 2 >/dev/null
  kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null
  kubectl version | sed 's/^/  /'
  CLUSTER_UP=1
}

podenv() { # NAME → "secretname/key" of the env var's secretKeyRef in the first gh pod
  kubectl -n gatehouse get pods -l app.kubernetes.io/instance=gh -o json |
    jq -r --arg n "$1" '[.items[] | select(.metadata.deletionTimestamp == null)][0].spec.containers[0].env[] | select(.name == $n) | "\(.valueFrom.secretKeyRef.name)/\(.valueFrom.secretKeyRef.key)"'
}

st_cluster() {
  cluster_up
  kubectl create namespace gatehouse >/dev/null

  # 1. helm install refuses to proceed without secrets, with the chart's message.
  local out
  if out=$(helm install gh "$CHART" -n gatehouse --set zitadel.domain=https://x.example 2>&1); then
    die "helm install succeeded without secrets"
  fi
  grep -q "no secrets given" <<<"$out" || die "unexpected install error: $out"
  log "  install without secrets refused: ok"

  # 2. A real install, waited for.
  # Short shutdown values: simulated pods honour terminationGracePeriodSeconds on rollouts.
  helm install gh "$CHART" -n gatehouse -f "$CHART/ci/defaults-values.yaml" \
    --set shutdown.delay=1s --set shutdown.timeout=1s --set shutdown.extraGracePeriodSeconds=1 --wait --timeout 3m | sed -n '1,6p;/Redirect URI/p;/Post-logout/p'
  kubectl -n gatehouse rollout status deploy/gh-gatehouse --timeout=60s

  # 3. The pod spec carries the secrets as env via secretKeyRef, from the chart's Secret.
  [[ "$(podenv ZITADEL_CLIENT_ID)" == "gh-gatehouse/ZITADEL_CLIENT_ID" ]] || die "ZITADEL_CLIENT_ID not from the Secret: $(podenv ZITADEL_CLIENT_ID)"
  [[ "$(podenv SESSION_SECRET)" == "gh-gatehouse/SESSION_SECRET" ]] || die "SESSION_SECRET not from the Secret"
  [[ "$(kubectl -n gatehouse get secret gh-gatehouse -o jsonpath='{.data.ZITADEL_CLIENT_ID}' | base64 -d)" == "300000000000000001" ]] ||
    die "Secret does not hold the client ID"
  kubectl -n gatehouse get pods -l app.kubernetes.io/instance=gh -o json |
    jq -e '.items[0].spec | .automountServiceAccountToken == false and .securityContext.runAsNonRoot == true and .containers[0].securityContext.readOnlyRootFilesystem == true' >/dev/null ||
    die "pod spec lost its hardening"
  log "  secrets reach the pod as env (secretKeyRef), hardening intact: ok"

  # 4. Changing a secret value rolls the Deployment (new pod template → new ReplicaSet).
  local before after
  before=$(kubectl -n gatehouse get deploy gh-gatehouse -o jsonpath='{.spec.template.metadata.annotations.checksum/secret}')
  local rs_before
  rs_before=$(kubectl -n gatehouse get rs -l app.kubernetes.io/instance=gh -o name | sort)
  log "  helm upgrade with a new session.secret ..."
  helm upgrade gh "$CHART" -n gatehouse --reuse-values \
    --set session.secret=rotated-session-secret-0123456789abcdefghijkl --wait --timeout 3m >/dev/null
  kubectl -n gatehouse rollout status deploy/gh-gatehouse --timeout=90s
  after=$(kubectl -n gatehouse get deploy gh-gatehouse -o jsonpath='{.spec.template.metadata.annotations.checksum/secret}')
  [[ -n "$before" && "$before" != "$after" ]] || die "checksum/secret did not change ($before → $after)"
  local rs_new
  rs_new=$(comm -13 <(echo "$rs_before") <(kubectl -n gatehouse get rs -l app.kubernetes.io/instance=gh -o name | sort))
  [[ -n "$rs_new" ]] || die "no new ReplicaSet after the secret change"
  [[ "$(kubectl -n gatehouse get "$rs_new" -o jsonpath='{.status.readyReplicas}')" == "2" ]] || die "new ReplicaSet not ready"
  log "  secret change rolled the Deployment ($rs_new): ok"

  # 5. Server-side validation of everything-enabled manifests (with the Gateway API and
  #    prometheus-operator CRDs installed) and of the plain k8s/ base.
  kubectl apply -f "$GATEWAY_CRDS_FILE" -f "$SM_CRDS_FILE" >/dev/null
  kubectl wait --for=condition=Established crd/httproutes.gateway.networking.k8s.io crd/servicemonitors.monitoring.coreos.com --timeout=60s >/dev/null
  kubectl create namespace gh-everything >/dev/null
  helm template gh "$CHART" -n gh-everything --kube-version "$KV" -f "$CHART/ci/everything-values.yaml" >"$WORK/everything.yaml"
  # A CRD just established can take a moment to appear in discovery: retry briefly.
  local try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    kubectl apply -n gh-everything --dry-run=server -f "$WORK/everything.yaml" >"$WORK/everything.out" 2>&1 && break
    ((try < 10)) || { cat "$WORK/everything.out"; die "server-side dry-run of the everything-enabled manifests failed"; }
    sleep 2
  done
  sed 's/^/  /' "$WORK/everything.out"
  kubectl create namespace gh-k8s >/dev/null
  kubectl apply -n gh-k8s --dry-run=server -k k8s/ | sed 's/^/  /'
  # ...and the server rejects what the dry-run must catch (a field typo).
  if kubectl kustomize k8s/ | sed 's/enableServiceLinks:/enableServiceLink:/' |
    kubectl apply -n gh-k8s --dry-run=server --validate=strict -f - >/dev/null 2>&1; then
    die "server-side dry-run accepted an unknown field"
  fi
  log "  server-side dry-run (everything enabled, k8s/): ok"

  # 6. helm uninstall leaves nothing of the release behind.
  helm uninstall gh -n gatehouse --wait --timeout 2m >/dev/null
  kubectl -n gatehouse wait --for=delete pod -l app.kubernetes.io/instance=gh --timeout=90s >/dev/null 2>&1 || true
  local left
  left=$(kubectl -n gatehouse get all,configmap,secret,serviceaccount,pdb,ingress,networkpolicy -l app.kubernetes.io/instance=gh -o name 2>/dev/null)
  [[ -z "$left" ]] || die "left after helm uninstall: $left"
  log "  helm uninstall cleaned up: ok"
}

# ------------------------------------------------------------------ image (buildah → runc)
free_port() { # a free TCP port on loopback
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  return 1
}

st_image() {
  need buildah umoci runc file ldd jq curl go
  local img="$WORK/img" bin
  mkdir -p "$img/empty"
  bin="$img/gatehouse"
  # Same flags as the Dockerfile's build stage.
  CGO_ENABLED=0 go build -tags production,grpcnotrace -trimpath -ldflags "-s -w -X main.version=deploy-check" -o "$bin" ./cmd/gatehouse
  file "$bin" | sed 's/^/  /'
  file "$bin" | grep -q "statically linked" || die "binary is not statically linked"
  if ldd "$bin" >/dev/null 2>&1; then die "ldd found dynamic dependencies"; fi
  (cd "$img/empty" && "$bin" -version) | sed 's/^/  -version: /'
  [[ "${PIPESTATUS[0]}" == 0 ]] || die "binary does not run from an empty working directory"

  # From-scratch OCI image: the binary, the host's CA bundle, /tmp; non-root user.
  local B=(buildah --storage-driver vfs --root "$img/storage" --runroot "$img/run")
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$img/policy.json"
  local ctr
  ctr=$("${B[@]}" from --signature-policy "$img/policy.json" scratch)
  CLEANUPS+=("${B[*]} rm $ctr")
  "${B[@]}" copy --chmod 0555 "$ctr" "$bin" /gatehouse >/dev/null
  "${B[@]}" copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
  "${B[@]}" config --user 65532:65532 --port 3000 --workingdir / \
    --entrypoint '["/gatehouse"]' --label org.opencontainers.image.title=gatehouse "$ctr"
  "${B[@]}" commit --quiet --signature-policy "$img/policy.json" --format oci "$ctr" gatehouse:deploy-check >/dev/null
  "${B[@]}" push --quiet --signature-policy "$img/policy.json" gatehouse:deploy-check "oci:$img/oci:gatehouse" >/dev/null
  log "  image: $(du -sh "$img/oci" | cut -f1) OCI layout, $("${B[@]}" images --format '{{.Size}}' gatehouse:deploy-check)"

  umoci unpack --image "$img/oci:gatehouse" "$img/bundle" >/dev/null
  local port admin
  port=$(free_port) admin=$(free_port)
  # Share the host's loopback (no network namespace), read-only root, uid 65532, tmpfs /tmp.
  jq --arg port "$port" --arg admin "127.0.0.1:$admin" '
      .process.terminal = false
    | .root.readonly = true
    | .process.user.uid = 65532 | .process.user.gid = 65532
    | .linux.namespaces |= map(select(.type != "network"))
    | .mounts += [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "size=16m"]}]
    | .process.env += ["PORT=\($port)", "ADMIN_ADDR=\($admin)",
        "SESSION_SECRET=deploy-check-session-secret-0123456789abcdef",
        "ZITADEL_DOMAIN=http://127.0.0.1:1", "ZITADEL_CLIENT_ID=deploy-check",
        "ZITADEL_CALLBACK_URL=http://localhost:\($port)/auth/callback",
        "SHUTDOWN_DELAY=1s", "SHUTDOWN_TIMEOUT=5s", "LOG_FORMAT=json"]
  ' "$img/bundle/config.json" >"$img/config.json" && mv "$img/config.json" "$img/bundle/config.json"

  local id="gatehouse-deploy-check-$$" rroot="$img/runc"
  CLEANUPS+=("runc --root '$rroot' kill '$id' KILL; runc --root '$rroot' delete -f '$id'")
  runc --root "$rroot" run --bundle "$img/bundle" "$id" >"$img/container.log" 2>&1 &
  local rpid=$!
  local ok=""
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then ok=1; break; fi
    kill -0 "$rpid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$ok" ]] || { cat "$img/container.log"; die "/healthz did not answer 200 in the container"; }
  log "  /healthz: $(curl -fsS "http://127.0.0.1:$port/healthz" | head -c 80)"
  local ready
  ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")
  [[ "$ready" == 503 ]] || die "/readyz = $ready with the provider down, want 503"
  log "  /readyz with the provider unreachable: 503 (as designed)"

  local cpid
  cpid=$(runc --root "$rroot" state "$id" | jq -r .pid)
  [[ "$(awk '/^Uid:/{print $2}' "/proc/$cpid/status")" == 65532 ]] || die "container process is not uid 65532"
  awk '$5 == "/" {print $6}' "/proc/$cpid/mountinfo" | grep -q '^ro' || die "container root filesystem is not read-only"
  log "  runs as uid 65532 on a read-only root: ok"

  runc --root "$rroot" exec "$id" /gatehouse healthcheck || die "gatehouse healthcheck inside the container failed"
  log "  gatehouse healthcheck inside the container: exit 0"
  if runc --root "$rroot" exec --env "PORT=$(free_port)" "$id" /gatehouse healthcheck >/dev/null 2>&1; then
    die "healthcheck passed against a port with no server"
  fi

  local t0=$SECONDS rc=0
  runc --root "$rroot" kill "$id" TERM
  wait "$rpid" || rc=$?
  ((rc == 0)) || { tail -20 "$img/container.log"; die "SIGTERM: container exited $rc, want 0"; }
  log "  SIGTERM: clean exit 0 after $((SECONDS - t0))s"
  runc --root "$rroot" delete "$id" 2>/dev/null || true
}

# ------------------------------------------------------------------ tilt ci
st_tilt() {
  need tilt podman crane
  cluster_up
  local t="$WORK/tilt"
  mkdir -p "$t"
  # Docker API from podman (vfs storage, cgroupfs, runc), a local registry from crane.
  local sock="$t/podman.sock" regport
  regport=$(free_port)
  # The local registry speaks plain http; podman pushes there only when told it is insecure.
  printf '[[registry]]\nlocation = "localhost:%s"\ninsecure = true\n' "$regport" >"$t/registries.conf"
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$t/policy.json"
  local P=(podman --root "$t/storage" --runroot "$t/run" --storage-driver vfs --cgroup-manager cgroupfs
    --runtime runc --tmpdir "$t/tmp")
  mkdir -p "$t/tmp"
  (($(ulimit -n) >= 20000)) || ulimit -n 20000 2>/dev/null || true
  TMPDIR="$t/tmp" CONTAINERS_REGISTRIES_CONF="$t/registries.conf" CONTAINERS_POLICY_JSON="$t/policy.json" \
    "${P[@]}" system service --time=0 "unix://$sock" >"$t/podman.log" 2>&1 &
  CLEANUPS+=("kill $!")
  crane registry serve --address "127.0.0.1:$regport" >"$t/registry.log" 2>&1 &
  CLEANUPS+=("kill $!")
  for _ in $(seq 50); do [[ -S "$sock" ]] && break; sleep 0.2; done
  [[ -S "$sock" ]] || { cat "$t/podman.log"; die "podman API did not start"; }

  kubectl create namespace gatehouse-dev >/dev/null 2>&1 || true
  # .env for the Tiltfile (it turns it into the Secret); written to the work folder only.
  printf 'ZITADEL_DOMAIN=https://dev.zitadel.example\nZITADEL_CLIENT_ID=tilt-ci\nSESSION_SECRET=tilt-ci-session-secret-0123456789abcdefgh\n' >"$t/dotenv"
  local tport
  tport=$(free_port)
  if ! DOCKER_HOST="unix://$sock" DOCKER_BUILDKIT=0 TILT_DISABLE_ANALYTICS=1 \
    timeout 600 tilt ci --file Tiltfile --port "$tport" --timeout 8m -- \
      --ci --env-file "$t/dotenv" --registry "localhost:$regport" --namespace gatehouse-dev \
      >"$t/tilt.log" 2>&1; then
    sed 's/^/  /' "$t/tilt.log" | tail -60
    die "tilt ci failed"
  fi
  sed 's/^/  /' "$t/tilt.log" | grep -vE '^\s*$' | tail -25
  # The image really went through the local registry.
  crane ls "localhost:$regport/gatehouse-dev" --insecure | sed 's/^/  pushed: gatehouse-dev:/'
  kubectl -n gatehouse-dev get deploy gatehouse -o jsonpath='{.spec.template.spec.containers[0].image}' |
    grep -q "^localhost:$regport/gatehouse-dev:" || die "the Deployment does not run the image Tilt built"
  DOCKER_HOST="unix://$sock" TILT_DISABLE_ANALYTICS=1 tilt down --file Tiltfile -- --ci --env-file "$t/dotenv" \
    --registry "localhost:$regport" --namespace gatehouse-dev >/dev/null 2>&1 || true
}

# ------------------------------------------------------------------ main
GATEWAY_CRDS_FILE="$GATEHOUSE_CRDS/gateway.networking.k8s.io_httproutes.yaml"
SM_CRDS_FILE="$GATEHOUSE_CRDS/monitoring.coreos.com_servicemonitors.yaml"
ALL=(lint kubeconform k8s-sync unittest dockerfile cluster image tilt)
want=("$@")
((${#want[@]})) || want=("${ALL[@]}")
T0=$SECONDS
for s in "${want[@]}"; do
  case "$s" in
    lint) stage lint st_lint ;;
    kubeconform) stage kubeconform st_kubeconform ;;
    k8s-sync) stage k8s-sync st_k8s_sync ;;
    unittest) stage unittest st_unittest ;;
    dockerfile) stage dockerfile st_dockerfile ;;
    cluster) stage cluster st_cluster ;;
    image)
      if [[ -d cmd/gatehouse ]]; then stage image st_image; else skip image "cmd/gatehouse not in this tree yet"; fi ;;
    tilt)
      if [[ ! -d cmd/gatehouse ]]; then skip tilt "cmd/gatehouse not in this tree yet"
      elif [[ ! -f Tiltfile ]]; then skip tilt "no Tiltfile"
      else stage tilt st_tilt; fi ;;
    *) die "unknown stage $s (known: ${ALL[*]})" ;;
  esac
done
SUMMARY+=("$(printf '%-12s         %4ss' total $((SECONDS - T0)))")
