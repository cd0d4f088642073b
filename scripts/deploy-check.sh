#!/usr/bin/env bash
# scripts/deploy-check.sh — prove the deployment side: chart, manifests, image, Tiltfile.
#
# Needs the tools from scripts/tools.sh (run it first; it is idempotent). Stages:
#   lint        helm lint --strict with each charts/gatehouse/ci/*-values.yaml
#   kubeconform helm template (each ci values file) and k8s/ → kubeconform -strict against
#               schemas generated offline from the pinned Kubernetes swagger.json
#   k8s-sync    k8s/ equals the chart rendered with defaults, k8s/zitadel-key the chart's
#               application key file (scripts/gen-k8s.sh --check)
#   unittest    helm-unittest suites in charts/gatehouse/tests
#   dockerfile  go test ./internal/deploycheck (Dockerfile rules)
#   cluster     kwok cluster on a real kube-apiserver/etcd: helm install --wait, secrets as
#               env in the pod spec, secret change rolls the Deployment, CRD-backed
#               resources, the application key's volume and k8s/ accepted by server-side
#               dry-run, helm uninstall cleans up
#   release     scripts/release.sh against a local registry: multi-arch index on a distroless
#               stand-in pinned by digest, built twice → same digest; SBOM referrers; cosign
#               signatures verified, tampered image/SBOM and a wrong key rejected; the chart
#               pulled with `helm install oci://…` into the kwok cluster
#   image       the released linux/amd64 image → umoci → runc as non-root on a read-only root
#               in its own network namespace: /healthz, `gatehouse healthcheck`, `gatehouse
#               version`, clean SIGTERM; the linux/arm64 binary: architecture, static linking
#   tilt        `tilt ci` against the kwok cluster (podman Docker API + local registry) with
#               the embedded development provider; its dev image run with runc and a login
#               through the provider, its trace received over OTLP; both Tiltfile modes
#               evaluated (port-forwards, args)
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
  printf '  %-45s ' "k8s/ + zitadel-key component:"
  k8s_with_key >"$WORK/k8s-key.yaml"
  kubeconform_strict "$WORK/k8s-key.yaml"
  # The checker itself must reject an unknown field (proves -strict + schemas bite).
  sed 's/^\(\s*\)automountServiceAccountToken: false/\1automountServiceAccountTokn: false/' \
    "$WORK/render-defaults-values.yaml" >"$WORK/typo.yaml"
  if kubeconform_strict "$WORK/typo.yaml" >/dev/null 2>&1; then die "kubeconform accepted an unknown field"; fi
  # ...also in the forward-auth CRDs' objects (their schemas come from the CRDs, not swagger).
  sed 's/trustForwardHeader:/trustForwardHeadr:/' "$WORK/render-forwardauth-traefik-values.yaml" >"$WORK/typo-traefik.yaml"
  sed 's/headersToBackend:/headersToBackEnd:/' "$WORK/render-forwardauth-envoy-gateway-values.yaml" >"$WORK/typo-eg.yaml"
  grep -q trustForwardHeadr "$WORK/typo-traefik.yaml" && grep -q headersToBackEnd "$WORK/typo-eg.yaml" || die "typos not injected"
  for f in "$WORK/typo-traefik.yaml" "$WORK/typo-eg.yaml"; do
    if kubeconform_strict "$f" >/dev/null 2>&1; then die "kubeconform accepted an unknown field in $(basename "$f")"; fi
  done
}

st_k8s_sync() { scripts/gen-k8s.sh --check; }

# k8s/ built with its zitadel-key component (the application key mounted as a file).
k8s_with_key() {
  mkdir -p "$WORK/k8s-key"
  local rel
  rel=$(realpath --relative-to="$WORK/k8s-key" "$REPO/k8s")
  printf 'resources:\n  - %s\ncomponents:\n  - %s/zitadel-key\n' "$rel" "$rel" >"$WORK/k8s-key/kustomization.yaml"
  kubectl kustomize "$WORK/k8s-key"
}

st_unittest() {
  need helm
  grep -q '^unittest' <<<"$(helm plugin list)" || die "helm-unittest plugin missing (HELM_PLUGINS=$HELM_PLUGINS)"
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
  # kwokctl picks free ports for etcd, the API server and the controllers and
  # binds them later: on a busy machine one can be taken meanwhile. Such a
  # start is retried (new ports); any other failure ends the stage.
  local try
  for try in 1 2 3; do
    kwokctl create cluster --name "$CLUSTER" --config "$WORK/kwokctl.yaml" --wait 2m \
      >"$WORK/kwok-create.log" 2>&1 && break
    if ((try < 3)) && grep -rqs "address already in use" "$WORK/kwok-create.log" "$KWOK_WORKDIR/clusters/$CLUSTER/logs"; then
      log "  a port kwokctl picked was taken before its component bound it: retrying ($try/3)"
      kwokctl delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
      continue
    fi
    cat "$WORK/kwok-create.log"
    return 1
  done
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
  # A CRD applied a moment ago may have no status yet, and kubectl wait then fails at once
  # (".status.conditions accessor error") instead of waiting: retry that.
  local crd_try
  for crd_try in $(seq 30); do
    kubectl wait --for=condition=Established crd/httproutes.gateway.networking.k8s.io crd/servicemonitors.monitoring.coreos.com \
      --timeout=60s >/dev/null 2>&1 && break
    ((crd_try < 30)) || die "the Gateway API and ServiceMonitor CRDs did not become Established"
    sleep 1
  done
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
  # The application key mounted from a Secret as a file (ci/appkey-values.yaml).
  helm template gh "$CHART" -n gh-everything --kube-version "$KV" -f "$CHART/ci/appkey-values.yaml" --show-only templates/deployment.yaml >"$WORK/appkey.yaml"
  kubectl apply -n gh-everything --dry-run=server --validate=strict -f "$WORK/appkey.yaml" | sed 's/^/  appkey: /'
  kubectl create namespace gh-k8s >/dev/null
  kubectl apply -n gh-k8s --dry-run=server -k k8s/ | sed 's/^/  /'
  k8s_with_key | kubectl apply -n gh-k8s --dry-run=server --validate=strict -f - | sed 's/^/  zitadel-key: /'
  # ...and the server rejects what the dry-run must catch (a field typo).
  if kubectl kustomize k8s/ | sed 's/enableServiceLinks:/enableServiceLink:/' |
    kubectl apply -n gh-k8s --dry-run=server --validate=strict -f - >/dev/null 2>&1; then
    die "server-side dry-run accepted an unknown field"
  fi
  log "  server-side dry-run (everything enabled, application key file, k8s/ with and without zitadel-key): ok"

  # 6. helm uninstall leaves nothing of the release behind.
  helm uninstall gh -n gatehouse --wait --timeout 2m >/dev/null
  kubectl -n gatehouse wait --for=delete pod -l app.kubernetes.io/instance=gh --timeout=90s >/dev/null 2>&1 || true
  local left
  left=$(kubectl -n gatehouse get all,configmap,secret,serviceaccount,pdb,ingress,networkpolicy -l app.kubernetes.io/instance=gh -o name 2>/dev/null)
  [[ -z "$left" ]] || die "left after helm uninstall: $left"
  log "  helm uninstall cleaned up: ok"
}

# ------------------------------------------------------------------ local registry
# crane's registry takes --address; 127.0.0.1:0 lets the kernel pick the port, which it
# then logs ("serving on port N"): no port is chosen here, so none can be taken meanwhile.
REGISTRY=""
registry_up() {
  [[ -n "$REGISTRY" ]] && return 0
  need crane
  local log="$WORK/registry.log" port=""
  crane registry serve --address 127.0.0.1:0 >"$log" 2>&1 &
  CLEANUPS+=("kill $!")
  for _ in $(seq 100); do
    port=$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$log")
    [[ -n "$port" ]] && break
    sleep 0.1
  done
  [[ -n "$port" ]] || { cat "$log"; die "crane registry did not start"; }
  REGISTRY="localhost:$port"
  log "  local registry: $REGISTRY"
}

# runc_up ID BUNDLE: run a container in the background in a network namespace of its own
# (loopback only: its ports collide with nothing on the host; reach them with netns_do).
# Sets RUNC_PID (the runc process) and CPID (the container's init).
RUNC_ROOT=""
runc_up() {
  local id=$1 bundle=$2
  RUNC_ROOT="$WORK/runc"
  CLEANUPS+=("runc --root '$RUNC_ROOT' kill '$id' KILL; runc --root '$RUNC_ROOT' delete -f '$id'")
  runc --root "$RUNC_ROOT" run --bundle "$bundle" "$id" >"$bundle/container.log" 2>&1 &
  RUNC_PID=$! CPID=""
  for _ in $(seq 100); do
    CPID=$(runc --root "$RUNC_ROOT" state "$id" 2>/dev/null | jq -r 'select(.status == "running") | .pid' || true)
    [[ -n "$CPID" ]] && break
    kill -0 "$RUNC_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$CPID" ]] || { cat "$bundle/container.log"; die "container $id did not start"; }
}
netns_do() { nsenter --net="/proc/$CPID/ns/net" "$@"; }
wait_http() { # URL: inside the container's network namespace, until 200 (10 s)
  for _ in $(seq 100); do
    netns_do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$RUNC_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------------ release
VERSION_CI="0.0.0-ci.$$"
RELEASED=""
release_up() { # scripts/release.sh against the local registry, once
  [[ -n "$RELEASED" ]] && return 0
  need go crane cosign cyclonedx-gomod helm jq umoci
  registry_up
  local r="$WORK/release"
  mkdir -p "$r"
  # Base: the distroless static:nonroot stand-in (Debian's CA bundle and tzdata), pushed and
  # then pinned by digest exactly as releases pin the real one (which cannot be pulled here).
  EPOCH=$(git log -1 --format=%ct HEAD)
  (cd internal/release/ocibuild && GOWORK=off GOFLAGS= go run . base -out "$r/base" -epoch "$EPOCH") >/dev/null
  crane push --insecure --index "$r/base" "$REGISTRY/distroless-standin:static-debian12-nonroot" >/dev/null 2>"$r/crane.log" ||
    { cat "$r/crane.log"; die "crane push of the base stand-in"; }
  BASE="$REGISTRY/distroless-standin@$(crane digest --insecure "$REGISTRY/distroless-standin:static-debian12-nonroot")"
  log "  base stand-in: $BASE"
  export COSIGN_PASSWORD=deploy-check-key-password
  (cd "$r" && cosign generate-key-pair --output-key-prefix cosign >/dev/null 2>&1) || die "cosign generate-key-pair"
  KEYFILE="$r/cosign.key" PUBFILE="$r/cosign.pub"
  local t0=$SECONDS
  scripts/release.sh "$VERSION_CI" --registry "$REGISTRY" --key "$KEYFILE" --base "$BASE" --insecure \
    --out "$r/out" >"$r/release.json" 2>"$r/release.log" || { cat "$r/release.log"; die "scripts/release.sh failed"; }
  grep '^\[release' "$r/release.log" | sed 's/^/  /'
  log "  released $VERSION_CI in $((SECONDS - t0))s"
  IMAGE="$REGISTRY/gatehouse" DIGEST=$(jq -r .digest "$r/release.json")
  AMD64=$(jq -r '.platforms["linux/amd64"].digest' "$r/release.json")
  ARM64=$(jq -r '.platforms["linux/arm64"].digest' "$r/release.json")
  RELEASED=1
}

cosign_verify() { # REF: key-based, offline (no transparency log is used for signing)
  cosign verify --key "${2:-$PUBFILE}" --insecure-ignore-tlog --allow-insecure-registry --allow-http-registry "$1" 2>&1
}

st_release() {
  release_up
  cluster_up
  local r="$WORK/release" rel="$WORK/release/release.json"

  # 1. The index: both platforms, each on the pinned base; config as the Dockerfile says.
  [[ "$(crane digest --insecure "$IMAGE:$VERSION_CI")" == "$DIGEST" ]] || die "$IMAGE:$VERSION_CI is not $DIGEST"
  crane manifest --insecure "$IMAGE@$DIGEST" | jq -e '.mediaType == "application/vnd.oci.image.index.v1+json"
      and ([.manifests[].platform | "\(.os)/\(.architecture)"] | sort == ["linux/amd64", "linux/arm64"])' >/dev/null ||
    die "the index does not hold linux/amd64 and linux/arm64"
  local p d base_d
  for p in amd64 arm64; do
    d=$(jq -r --arg p "linux/$p" '.platforms[$p].digest' "$rel")
    base_d=$(crane digest --insecure --platform "linux/$p" "$BASE")
    crane manifest --insecure "$IMAGE@$d" | jq -e --arg b "$base_d" '.annotations["org.opencontainers.image.base.digest"] == $b' >/dev/null ||
      die "linux/$p image does not record its base digest $base_d"
    crane config --insecure "$IMAGE@$d" | jq -e --arg p "$p" --arg v "$VERSION_CI" '
        .architecture == $p and .os == "linux" and .config.User == "65532:65532"
        and .config.Entrypoint == ["/gatehouse"] and (.config.ExposedPorts | keys) == ["3000/tcp"]
        and .config.Healthcheck.Test == ["CMD", "/gatehouse", "healthcheck"]
        and .config.Labels["org.opencontainers.image.version"] == $v' >/dev/null ||
      die "linux/$p image config differs from the Dockerfile's final stage: $(crane config --insecure "$IMAGE@$d")"
  done
  log "  index $DIGEST: linux/amd64 + linux/arm64, each recording its pinned base digest, configs as the Dockerfile's: ok"

  # 2. Reproducible: a second build of the same commit from another directory (so -trimpath
  #    matters) gives the same index digest and the same SBOMs; another epoch does not.
  local src2="$WORK/src2"
  mkdir -p "$src2"
  tar --exclude=./bin --exclude=./out -C "$REPO" -cf - . | tar -C "$src2" -xf -
  local d2
  d2=$(cd "$src2" && scripts/release.sh "$VERSION_CI" --build-only --base "$BASE" --insecure --out "$r/out2" 2>"$r/build2.log") ||
    { cat "$r/build2.log"; die "second build failed"; }
  [[ "$d2" == "$DIGEST" ]] || die "not reproducible: the second build of the same commit gave $d2, the first $DIGEST"
  for p in linux-amd64 linux-arm64; do
    cmp -s "$r/out/$p/gatehouse" "$r/out2/$p/gatehouse" || die "$p binaries differ between two builds"
    cmp -s "$r/out/$p/sbom.cdx.json" "$r/out2/$p/sbom.cdx.json" || die "$p SBOMs differ between two builds"
  done
  local d3
  d3=$(cd internal/release/ocibuild && GOWORK=off GOFLAGS= go run . image -base "oci:$r/base" -out "$r/epoch-plus-1" \
    -epoch $((EPOCH + 1)) -binary "linux/amd64=$r/out/linux-amd64/gatehouse")
  [[ "$d3" != "$DIGEST" && -n "$d3" ]] || die "the epoch does not reach the image (digest $d3)"
  log "  reproducible: a second build from $src2 gave the same digest, binaries and SBOMs: ok"

  # 3. SBOMs: one CycloneDX document per platform, attached as an OCI referrer of that image.
  local sbom want_sbom blob
  for p in amd64 arm64; do
    d=$(jq -r --arg p "linux/$p" '.platforms[$p].digest' "$rel")
    want_sbom=$(jq -r --arg p "linux/$p" '.platforms[$p].sbom' "$rel")
    sbom=$(cd internal/release/ocibuild && GOWORK=off GOFLAGS= go run . referrers -insecure -artifact-type application/vnd.cyclonedx+json "$IMAGE@$d" | awk '{print $1}')
    [[ "$sbom" == "$want_sbom" ]] || die "linux/$p: referrers list '$sbom', want the SBOM $want_sbom"
    blob=$(crane manifest --insecure "$IMAGE@$sbom" | jq -r '.layers[0].digest')
    crane blob --insecure "$IMAGE@$blob" >"$r/sbom-$p.json"
    cmp -s "$r/sbom-$p.json" "$r/out/linux-$p/sbom.cdx.json" || die "linux/$p: the attached SBOM is not the built one"
    jq -e --arg v "$VERSION_CI" --arg p "$p" '.bomFormat == "CycloneDX"
        and .metadata.component.name == "github.com/gatehouse/gatehouse" and .metadata.component.version == $v
        and ([.components[].name] | index("github.com/zitadel/oidc/v3") != null)
        and ([.components[].name] | index("go.opentelemetry.io/otel") != null)
        and (.metadata.component.purl | test("goarch=" + $p + "&"))' \
      "$r/sbom-$p.json" >/dev/null || die "linux/$p SBOM lacks the expected modules: $(head -c 600 "$r/sbom-$p.json")"
  done
  log "  SBOM referrers: $(jq '.components | length' "$r/sbom-amd64.json") modules (linux/amd64), attached and intact: ok"

  # 4. Signatures: the index, each platform image, each SBOM and the chart verify with the
  #    public key...
  local ref
  for ref in "$IMAGE:$VERSION_CI" "$IMAGE@$AMD64" "$IMAGE@$ARM64" \
    "$IMAGE@$(jq -r '.platforms["linux/amd64"].sbom' "$rel")" "$IMAGE@$(jq -r '.platforms["linux/arm64"].sbom' "$rel")" \
    "$REGISTRY/charts/gatehouse@$(jq -r .chart.digest "$rel")"; do
    cosign_verify "$ref" >"$r/verify.out" || { cat "$r/verify.out"; die "cosign verify $ref failed"; }
  done
  jq -e --arg d "$DIGEST" '.[0].critical.image["docker-manifest-digest"] == $d' \
    <(cosign_verify "$IMAGE:$VERSION_CI" | grep '^\[') >/dev/null || die "the signature does not name the index digest"
  log "  cosign verify --key: index, both images, both SBOMs and the chart: ok"
  # ...and nothing else does: a tampered image (even carrying the genuine signature), a
  # tampered SBOM, or the right image with another key.
  local bad
  bad=$(crane mutate --insecure "$IMAGE@$AMD64" --label tampered=yes -t "$IMAGE:tampered" 2>/dev/null | sed 's/.*@//')
  [[ "$bad" == sha256:* && "$bad" != "$AMD64" ]] || die "could not push a tampered image ($bad)"
  if cosign_verify "$IMAGE:tampered" >"$r/verify.out"; then die "cosign verified a tampered, unsigned image"; fi
  crane copy --insecure "$IMAGE:sha256-${AMD64#sha256:}.sig" "$IMAGE:sha256-${bad#sha256:}.sig" >/dev/null 2>&1
  if cosign_verify "$IMAGE:tampered" >"$r/verify.out"; then die "the genuine signature verified a tampered image"; fi
  grep -qi "no matching signatures\|digest" "$r/verify.out" || die "unexpected verify failure: $(cat "$r/verify.out")"
  jq '.components[0].version = "v0.0.0-tampered"' "$r/sbom-amd64.json" >"$r/sbom-tampered.json"
  bad=$(cd internal/release/ocibuild && GOWORK=off GOFLAGS= go run . attach -insecure -subject "$IMAGE@$AMD64" \
    -file "$r/sbom-tampered.json" -artifact-type application/vnd.cyclonedx+json -epoch "$EPOCH")
  if cosign_verify "$IMAGE@$bad" >"$r/verify.out"; then die "cosign verified a tampered SBOM"; fi
  (cd "$r" && COSIGN_PASSWORD=other cosign generate-key-pair --output-key-prefix other >/dev/null 2>&1)
  if cosign_verify "$IMAGE:$VERSION_CI" "$r/other.pub" >"$r/verify.out"; then die "cosign verified with another key"; fi
  log "  tampered image (also with the genuine signature copied), tampered SBOM, wrong key: all rejected: ok"

  # 5. The chart as an OCI artifact: version and appVersion follow the release, its default
  #    image is the released index, and helm installs it from the registry.
  helm show chart "oci://$REGISTRY/charts/gatehouse" --version "$VERSION_CI" --plain-http 2>/dev/null >"$r/chart.yaml"
  grep -qx "version: $VERSION_CI" "$r/chart.yaml" && grep -qx "appVersion: $VERSION_CI" "$r/chart.yaml" ||
    die "chart version/appVersion do not follow the release: $(cat "$r/chart.yaml")"
  kubectl create namespace gh-oci >/dev/null
  helm install gho "oci://$REGISTRY/charts/gatehouse" --version "$VERSION_CI" --plain-http -n gh-oci \
    -f "$CHART/ci/defaults-values.yaml" --wait --timeout 3m >/dev/null 2>"$r/helm-install.log" ||
    { cat "$r/helm-install.log"; die "helm install oci:// failed"; }
  [[ "$(kubectl -n gh-oci get deploy gho-gatehouse -o jsonpath='{.spec.template.spec.containers[0].image}')" == "$IMAGE@$DIGEST" ]] ||
    die "the installed chart does not run the released image $IMAGE@$DIGEST"
  helm uninstall gho -n gh-oci --timeout 2m >/dev/null
  log "  helm install oci://…/charts/gatehouse --version $VERSION_CI into kwok runs the released digest: ok"

  # 6. The release process: --prepare moves Unreleased under the version and sets the chart's
  #    versions; a release version without its CHANGELOG section (or from a dirty tree) is refused.
  local prep="$WORK/prepare"
  mkdir -p "$prep/charts/gatehouse" && cp CHANGELOG.md "$prep/" && cp "$CHART/Chart.yaml" "$prep/charts/gatehouse/"
  RELEASE_ROOT="$prep" scripts/release.sh --prepare 9.8.7 >/dev/null 2>&1 || die "release.sh --prepare failed"
  grep -q '^## \[Unreleased\]' "$prep/CHANGELOG.md" && grep -q "^## \[9.8.7\] - $(date -u +%Y-%m-%d)" "$prep/CHANGELOG.md" &&
    grep -qx 'version: 9.8.7' "$prep/charts/gatehouse/Chart.yaml" && grep -qx 'appVersion: "9.8.7"' "$prep/charts/gatehouse/Chart.yaml" ||
    die "release.sh --prepare did not update CHANGELOG.md and Chart.yaml"
  local out
  if out=$(scripts/release.sh 9.8.7 --build-only 2>&1); then die "release 9.8.7 ran without a CHANGELOG section"; fi
  grep -q "CHANGELOG.md has no\|dirty work tree" <<<"$out" || die "unexpected refusal: $out"
  log "  release.sh --prepare, and a release without its CHANGELOG section refused: ok"
}

# ------------------------------------------------------------------ image (runc)
st_image() {
  need runc umoci skopeo file jq curl nsenter
  release_up
  local img="$WORK/img"
  mkdir -p "$img"
  # linux/arm64: the binary inside the published image, checked without running it.
  crane export --insecure "$IMAGE@$ARM64" - | tar -xf - -C "$img" gatehouse
  file "$img/gatehouse" | sed 's/^/  arm64: /'
  grep -q "ARM aarch64" <<<"$(file "$img/gatehouse")" || die "the linux/arm64 image holds no arm64 binary"
  grep -q "statically linked" <<<"$(file "$img/gatehouse")" || die "the arm64 binary is not statically linked"
  rm "$img/gatehouse"

  # linux/amd64: the published image, unpacked and run.
  skopeo copy --quiet --src-tls-verify=false "docker://$IMAGE@$AMD64" "oci:$img/oci:gatehouse" >/dev/null
  umoci unpack --image "$img/oci:gatehouse" "$img/bundle" >/dev/null
  local rootfs="$img/bundle/rootfs"
  grep -q "x86-64.*statically linked" <<<"$(file "$rootfs/gatehouse")" || die "the amd64 binary is not static x86-64: $(file "$rootfs/gatehouse")"
  grep -qx 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' "$rootfs/etc/passwd" || die "no nonroot user in /etc/passwd"
  [[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" && -f "$rootfs/usr/share/zoneinfo/Europe/Berlin" ]] || die "CA bundle or tzdata missing"
  [[ "$(stat -c %u:%a "$rootfs/home/nonroot")" == "65532:700" && "$(stat -c %a "$rootfs/tmp")" == 1777 ]] || die "home or /tmp mode wrong"
  # Read-only root, uid 65532, tmpfs /tmp, a network namespace of its own.
  jq '
      .process.terminal = false
    | .root.readonly = true
    | .process.user.uid = 65532 | .process.user.gid = 65532
    | .mounts += [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "size=16m"]}]
    | .process.env += ["PORT=3000", "ADMIN_ADDR=127.0.0.1:9090",
        "SESSION_SECRET=deploy-check-session-secret-0123456789abcdef",
        "ZITADEL_DOMAIN=http://127.0.0.1:1", "ZITADEL_CLIENT_ID=deploy-check",
        "ZITADEL_CALLBACK_URL=http://localhost:3000/auth/callback",
        "SHUTDOWN_DELAY=1s", "SHUTDOWN_TIMEOUT=5s", "LOG_FORMAT=json"]
  ' "$img/bundle/config.json" >"$img/config.json" && mv "$img/config.json" "$img/bundle/config.json"
  jq -e '[.linux.namespaces[].type] | index("network") != null' "$img/bundle/config.json" >/dev/null || die "no network namespace"

  local id="gatehouse-deploy-check-$$"
  runc_up "$id" "$img/bundle"
  wait_http http://127.0.0.1:3000/healthz || { cat "$img/bundle/container.log"; die "/healthz did not answer 200 in the container"; }
  log "  /healthz: $(netns_do curl -fsS http://127.0.0.1:3000/healthz)"
  local ready
  ready=$(netns_do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3000/readyz)
  [[ "$ready" == 503 ]] || die "/readyz = $ready with the provider down, want 503"
  log "  /readyz with the provider unreachable: 503 (as designed)"
  grep -q "^gatehouse_build_info{.*version=\"$VERSION_CI\"" <<<"$(netns_do curl -fsS http://127.0.0.1:9090/metrics)" ||
    die "/metrics lacks gatehouse_build_info for $VERSION_CI"
  grep -q "\"msg\":\"gatehouse starting\".*\"version\":\"$VERSION_CI\".*\"commit\":\"$(git rev-parse HEAD)\"" "$img/bundle/container.log" ||
    die "the startup log lacks the version and commit: $(grep starting "$img/bundle/container.log")"
  log "  gatehouse_build_info on /metrics, version and commit in the startup log: ok"

  [[ "$(awk '/^Uid:/{print $2}' "/proc/$CPID/status")" == 65532 ]] || die "container process is not uid 65532"
  grep -q '^ro' <<<"$(awk '$5 == "/" {print $6}' "/proc/$CPID/mountinfo")" || die "container root filesystem is not read-only"
  log "  runs as uid 65532 on a read-only root: ok"

  runc --root "$RUNC_ROOT" exec "$id" /gatehouse healthcheck || die "gatehouse healthcheck inside the container failed"
  log "  gatehouse healthcheck inside the container: exit 0"
  if runc --root "$RUNC_ROOT" exec --env PORT=1 "$id" /gatehouse healthcheck >/dev/null 2>&1; then
    die "healthcheck passed against a port with no server"
  fi
  runc --root "$RUNC_ROOT" exec "$id" /gatehouse version >"$img/version.txt"
  sed 's/^/  version: /' "$img/version.txt"
  grep -qx "gatehouse $VERSION_CI" "$img/version.txt" && grep -q "commit: *$(git rev-parse HEAD)" "$img/version.txt" &&
    grep -q "build tags: *production,grpcnotrace" "$img/version.txt" && grep -q "platform: *linux/amd64" "$img/version.txt" &&
    grep -q "go: *go1\." "$img/version.txt" || die "gatehouse version in the image is wrong"

  local t0=$SECONDS rc=0
  runc --root "$RUNC_ROOT" kill "$id" TERM
  wait "$RUNC_PID" || rc=$?
  ((rc == 0)) || { tail -20 "$img/bundle/container.log"; die "SIGTERM: container exited $rc, want 0"; }
  log "  SIGTERM: clean exit 0 after $((SECONDS - t0))s"
  runc --root "$RUNC_ROOT" delete "$id" 2>/dev/null || true
}

# ------------------------------------------------------------------ tilt ci
# tilt_result ARGS...: the Tiltfile evaluated without deploying (`tilt alpha tiltfile-result`).
tilt_result() {
  TILT_DISABLE_ANALYTICS=1 tilt alpha tiltfile-result --file Tiltfile -- "$@" 2>"$WORK/tilt/result.err" ||
    { cat "$WORK/tilt/result.err"; die "tiltfile-result $* failed"; }
}
# forwards JSON MANIFEST: "local:container" port-forwards of a manifest, sorted, space-separated.
forwards() {
  jq -r --arg m "$2" '[.Manifests[] | select(.Name == $m) | .. | objects
    | select((.containerPort // .ContainerPort) != null and (.localPort // .LocalPort) != null)
    | "\(.localPort // .LocalPort):\(.containerPort // .ContainerPort)"] | unique | join(" ")' <<<"$1"
}
# dev_args JSON: the gatehouse container's args in the Deployment the Tiltfile deploys.
dev_args() {
  jq -r '[.Manifests[] | select(.Name == "gatehouse") | .. | strings | select(test("kind: Deployment"))][0]' <<<"$1" |
    awk '/^[ -]*args:/{a=1; next} a && /^ *- /{sub(/^ *- /, ""); gsub(/"/, ""); printf "%s ", $0; next} a{a=0}'
}

st_tilt() {
  # Tilt may still be building (scripts/test.sh builds the tools in the
  # background while the other stages run): wait for it, or build it.
  scripts/tools.sh tilt | sed 's/^/  /'
  need tilt podman crane skopeo umoci runc nsenter
  cluster_up
  registry_up
  local t="$WORK/tilt"
  mkdir -p "$t/tmp"

  # 1. Both modes, evaluated: which port-forwards and args each gives.
  printf 'ZITADEL_DOMAIN=https://dev.zitadel.example\nZITADEL_CLIENT_ID=tilt-ci\nSESSION_SECRET=tilt-ci-session-secret-0123456789abcdefgh\n' >"$t/dotenv"
  local dev zit
  dev=$(tilt_result --dev-provider --namespace gatehouse-dev)
  zit=$(tilt_result --env-file "$t/dotenv" --namespace gatehouse-dev)
  [[ "$(forwards "$dev" gatehouse)" == "3000:3000 3001:3001 9090:9090" ]] ||
    die "dev-provider mode forwards '$(forwards "$dev" gatehouse)', want the app, the provider and metrics"
  [[ "$(forwards "$dev" jaeger)" == "16686:16686" ]] || die "no Jaeger UI port-forward: '$(forwards "$dev" jaeger)'"
  [[ "$(dev_args "$dev")" == "-dev -dev-listen-all -dev-idp-addr=127.0.0.1:3001 " ]] || die "dev-provider args: '$(dev_args "$dev")'"
  [[ "$(forwards "$zit" gatehouse)" == "3000:3000 9090:9090" && -z "$(dev_args "$zit")" ]] ||
    die ".env mode: forwards '$(forwards "$zit" gatehouse)', args '$(dev_args "$zit")'; want today's behaviour"
  if [[ ! -e .env ]]; then # a fresh checkout: no .env means the development provider
    [[ "$(dev_args "$(tilt_result --namespace gatehouse-dev)")" == "-dev "* ]] || die "without .env, Tilt does not choose the development provider"
  fi
  log "  Tiltfile: no .env → dev provider (-dev, forwards 3000 3001 9090, Jaeger 16686); .env → ZITADEL (3000 9090): ok"

  # 2. tilt ci with the development provider. Docker API from podman (vfs storage,
  #    cgroupfs, runc); the dev image's base is a local busybox (Debian's busybox-static).
  local sock="$t/podman.sock"
  printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REGISTRY" >"$t/registries.conf"
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$t/policy.json"
  local P=(podman --root "$t/storage" --runroot "$t/run" --storage-driver vfs --cgroup-manager cgroupfs
    --runtime runc --tmpdir "$t/tmp")
  (($(ulimit -n) >= 20000)) || ulimit -n 20000 2>/dev/null || true
  local bb="$t/busybox"
  mkdir -p "$bb/bin"
  cp /bin/busybox "$bb/bin/busybox"
  for a in sh stat sleep kill; do ln -s busybox "$bb/bin/$a"; done
  tar -C "$bb" -cf "$t/busybox.tar" .
  TMPDIR="$t/tmp" CONTAINERS_REGISTRIES_CONF="$t/registries.conf" CONTAINERS_POLICY_JSON="$t/policy.json" \
    "${P[@]}" import --quiet --change ENV=PATH=/bin "$t/busybox.tar" localhost/busybox-standin:ci >/dev/null
  TMPDIR="$t/tmp" CONTAINERS_REGISTRIES_CONF="$t/registries.conf" CONTAINERS_POLICY_JSON="$t/policy.json" \
    "${P[@]}" system service --time=0 "unix://$sock" >"$t/podman.log" 2>&1 &
  CLEANUPS+=("kill $!")
  for _ in $(seq 50); do [[ -S "$sock" ]] && break; sleep 0.2; done
  [[ -S "$sock" ]] || { cat "$t/podman.log"; die "podman API did not start"; }

  kubectl create namespace gatehouse-dev >/dev/null 2>&1 || true
  local targs=(--ci --dev-provider --ci-base-image localhost/busybox-standin:ci --registry "$REGISTRY" --namespace gatehouse-dev)
  # The Tiltfile's compile, once before `tilt ci`, so a cold build cache is
  # not spent inside its --timeout (the same command as the Tiltfile's).
  CGO_ENABLED=0 GOOS=linux GOARCH="$(go env GOARCH)" go build -trimpath -o /dev/null ./cmd/gatehouse
  # --port 0: the kernel picks Tilt's own API/web port.
  if ! DOCKER_HOST="unix://$sock" DOCKER_BUILDKIT=0 TILT_DISABLE_ANALYTICS=1 \
    timeout 600 tilt ci --file Tiltfile --port 0 --timeout 8m -- "${targs[@]}" >"$t/tilt.log" 2>&1; then
    sed 's/^/  /' "$t/tilt.log" | tail -60
    die "tilt ci failed"
  fi
  sed 's/^/  /' "$t/tilt.log" | grep -vE '^\s*$' | tail -15
  crane ls --insecure "$REGISTRY/gatehouse-dev" | sed 's/^/  pushed: gatehouse-dev:/'
  local dep ref
  dep=$(kubectl -n gatehouse-dev get deploy gatehouse -o json)
  ref=$(jq -r '.spec.template.spec.containers[0].image' <<<"$dep")
  [[ "$ref" == "$REGISTRY/gatehouse-dev:"* ]] || die "the Deployment does not run the image Tilt built: $ref"
  [[ "$(jq -r '.spec.template.spec.containers[0].args | join(" ")' <<<"$dep")" == "-dev -dev-listen-all -dev-idp-addr=127.0.0.1:3001" ]] ||
    die "the deployed container lacks the development provider's args"
  [[ "$(kubectl -n gatehouse-dev get secret gatehouse-dev-env -o jsonpath='{.data.ZITADEL_CLIENT_ID}' | base64 -d)" == tilt-dev-provider ]] ||
    die "Secret gatehouse-dev-env is not the development provider's"

  # 3. The pod, as far as a simulated node cannot run it: the image Tilt pushed, run with
  #    runc with the Deployment's args and environment (ConfigMap + Secret), in a network
  #    namespace of its own where /etc/hosts maps the Jaeger Service to loopback; a login
  #    through the development provider and its trace over OTLP (TestTiltDevPodLogin).
  local pod="$t/pod"
  mkdir -p "$pod"
  skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$pod/oci:dev" >/dev/null
  umoci unpack --image "$pod/oci:dev" "$pod/bundle" >/dev/null
  local envjson
  envjson=$(jq -n --argjson cm "$(kubectl -n gatehouse-dev get configmap gatehouse -o json)" \
    --argjson sec "$(kubectl -n gatehouse-dev get secret gatehouse-dev-env -o json)" --argjson dep "$dep" '
      ($cm.data | to_entries | map("\(.key)=\(.value)")) +
      [$dep.spec.template.spec.containers[0].env[] |
        if .value != null then "\(.name)=\(.value)"
        elif .valueFrom.secretKeyRef and ($sec.data[.valueFrom.secretKeyRef.key] != null)
        then "\(.name)=\($sec.data[.valueFrom.secretKeyRef.key] | @base64d)"
        else empty end]')
  local otel_hp # host:port of the Jaeger Service the pod exports to
  otel_hp=$(jq -r '.[] | select(startswith("OTEL_EXPORTER_OTLP_ENDPOINT=")) | sub(".*://"; "") | sub("/.*"; "")' <<<"$envjson")
  [[ "$otel_hp" == jaeger*:4318 ]] || die "the dev pod does not export to Jaeger's OTLP/HTTP port: $otel_hp"
  printf '127.0.0.1 localhost %s\n' "${otel_hp%:*}" >"$pod/hosts"
  jq --argjson env "$envjson" --argjson args "$(jq '.spec.template.spec.containers[0].args' <<<"$dep")" --arg hosts "$pod/hosts" '
      .process.terminal = false
    | .process.args += $args
    | .process.env += $env
    | .process.user.uid = 65532 | .process.user.gid = 65532
    | .mounts += [{"destination": "/etc/hosts", "type": "bind", "source": $hosts, "options": ["bind", "ro"]}]
  ' "$pod/bundle/config.json" >"$pod/config.json" && mv "$pod/config.json" "$pod/bundle/config.json"
  go test -c -o "$t/deploycheck.test" ./internal/deploycheck/
  runc_up "gatehouse-devpod-$$" "$pod/bundle"
  if ! GATEHOUSE_DEVPOD_APP=http://localhost:3000 GATEHOUSE_DEVPOD_OTLP="127.0.0.1:${otel_hp##*:}" \
    GATEHOUSE_DEVPOD_SERVICE=gatehouse-dev netns_do "$t/deploycheck.test" -test.run '^TestTiltDevPodLogin$' -test.v \
    >"$t/login.log" 2>&1 || ! grep -q -- '--- PASS: TestTiltDevPodLogin' "$t/login.log"; then
    sed 's/^/  /' "$t/login.log" | tail -30
    tail -30 "$pod/bundle/container.log"
    die "login through the dev pod failed"
  fi
  log "  dev image ($ref) under runc: login as alice through the provider, trace received over OTLP: ok"
  runc --root "$RUNC_ROOT" kill "gatehouse-devpod-$$" KILL 2>/dev/null || true

  DOCKER_HOST="unix://$sock" TILT_DISABLE_ANALYTICS=1 tilt down --file Tiltfile -- "${targs[@]}" >/dev/null 2>&1 || true
}

# ------------------------------------------------------------------ main
GATEWAY_CRDS_FILE="$GATEHOUSE_CRDS/gateway.networking.k8s.io_httproutes.yaml"
SM_CRDS_FILE="$GATEHOUSE_CRDS/monitoring.coreos.com_servicemonitors.yaml"
ALL=(lint kubeconform k8s-sync unittest dockerfile cluster release image tilt)
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
    release) stage release st_release ;;
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
