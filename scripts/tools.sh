#!/usr/bin/env bash
# scripts/tools.sh — install the pinned deploy tool chain, idempotently, into a cache
# folder OUTSIDE the repository (default /var/cache/gatehouse-tools, override with
# GATEHOUSE_TOOLS). A fresh machine pays every build once; later runs only check stamps.
#
# Everything comes from the Go module proxy (built from source, at the pinned versions
# below) or from Debian packages. Nothing downloads a prebuilt binary.
#
#   scripts/tools.sh            # install/verify everything
#   scripts/tools.sh helm kwok  # only some components (see COMPONENTS below)
#   eval "$(scripts/tools.sh --env)"   # print PATH/HELM_PLUGINS exports for the cache
#
# Build times on 2 cores (measured, cold module cache aside): see docs/DEPLOY.md.
set -euo pipefail

TOOLS="${GATEHOUSE_TOOLS:-/var/cache/gatehouse-tools}"
BIN="$TOOLS/bin"
OPT="$TOOLS/opt"
SRC="$TOOLS/src"
STAMPS="$TOOLS/stamps"

# ---- pinned versions (bump deliberately; each bump rebuilds only that tool) ----
HELM_VERSION=v3.22.0            # helm v3: plugin folders without install hooks work as-is
HELM_BUILD=2                    # bump to rebuild helm with different ldflags
KUBECONFORM_VERSION=v0.8.0
HELM_UNITTEST_VERSION=v1.1.2
KWOK_VERSION=v0.8.0             # its default Kubernetes is 1.36.1, pinned below to match
KUBE_VERSION=v1.36.1            # kube-apiserver/-controller-manager/-scheduler/kubectl + schemas
CRANE_VERSION=v0.22.1           # github.com/google/go-containerregistry
TILT_VERSION=v0.34.0            # newest tilt release the module proxy serves here
COSIGN_VERSION=v2.6.5           # key-based signing and verification of release artifacts
CYCLONEDX_GOMOD_VERSION=v1.10.0 # CycloneDX SBOM of a Go binary's modules
GATEWAY_API_VERSION=v1.4.0      # HTTPRoute CRD (schema for kubeconform, CRD for the cluster)
PROM_OPERATOR_VERSION=v0.85.0   # ServiceMonitor CRD (same)
TRAEFIK_VERSION=v3.7.13         # Middleware CRD (forward-auth), from the module's docs (Traefik does not build here)
ENVOY_GATEWAY_VERSION=v1.9.1    # SecurityPolicy CRD (forward-auth extAuth)
CADDY_VERSION=v2.11.9           # forward_auth, for the forward-auth proxy tests (internal/testenv)
OAUTH2_PROXY_VERSION=v7.15.6    # the forward-auth speed comparison only (not in the default list)
# ca-certificates and tzdata: the files of the distroless stand-in base (ocibuild base);
# busybox-static: the shell of the Tilt dev image's stand-in base in the deploy check.
DEBIAN_PACKAGES=(etcd-server umoci runc podman skopeo file jq curl ca-certificates tzdata busybox-static)

COMPONENTS=(apt helm kubeconform helm-unittest kwok kube crane cosign cyclonedx-gomod schemas tilt caddy)
# Built only when named: scripts/tools.sh oauth2-proxy
OPTIONAL_COMPONENTS=(oauth2-proxy)

if [[ "${1:-}" == "--env" ]]; then
  echo "export PATH=\"$BIN:\$PATH\""
  echo "export HELM_PLUGINS=\"$TOOLS/helm-plugins\""
  echo "export GATEHOUSE_SCHEMAS=\"$TOOLS/schemas\""
  echo "export GATEHOUSE_CRDS=\"$TOOLS/crds\""
  echo "export GATEHOUSE_KUBE_VERSION=\"$KUBE_VERSION\""
  exit 0
fi

if [[ "${1:-}" == "--components" ]]; then echo "${COMPONENTS[*]}"; exit 0; fi

mkdir -p "$BIN" "$OPT" "$SRC" "$STAMPS" "$TOOLS/helm-plugins"
TIMES_FILE=$(mktemp)
trap 'rm -f "$TIMES_FILE"' EXIT
export GOBIN="" GOWORK=off GOFLAGS=-buildvcs=false
export CGO_ENABLED=0
# Relative to the caller's priority: scripts/test.sh runs this whole script at nice 19
# in the background while the test stages run.
NICE=(nice -n 10)
# Test tools are compiled without optimisation or inlining: about a third less
# compile time (docs/DEPLOY.md, "Measured"), and nothing in the deploy check waits on
# their speed. Every tool is built with these flags and -trimpath, so packages two tools
# share at the same version are compiled once (one GOCACHE).
TOOLS_GCFLAGS=${TOOLS_GCFLAGS-all=-N -l}
GOBUILD_FLAGS=(-trimpath "-gcflags=$TOOLS_GCFLAGS")

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# cpu_now: CPU_NOW = user+system CPU seconds of this shell's finished children
# (`times` here, not in a $(...) subshell, whose children are its own).
cpu_now() {
  times >"$TIMES_FILE"
  CPU_NOW=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
    printf "%d", s }' "$TIMES_FILE")
}

# run_step NAME VERSION FUNC: skip when the stamp exists, else run FUNC and time it
# (wall and CPU). One installer per component and cache: a second run (another
# scripts/test.sh, or the background build it started) waits for that component's
# lock, then finds its stamp; different components build concurrently.
run_step() {
  local name=$1 version=$2 fn=$3 stamp="$STAMPS/$1-$2" lock
  if [[ -f "$stamp" ]]; then
    log "$name $version: cached ($(cat "$stamp"))"
    return 0
  fi
  exec {lock}>"$TOOLS/.lock-$name"
  if ! flock -n "$lock"; then
    log "$name $version: another run is building it, waiting ..."
    flock "$lock"
  fi
  if [[ -f "$stamp" ]]; then
    log "$name $version: built by another run ($(cat "$stamp"))"
    exec {lock}>&-
    return 0
  fi
  log "$name $version: installing ..."
  local t0=$SECONDS c0
  cpu_now; c0=$CPU_NOW
  "$fn"
  cpu_now
  local dt=$((SECONDS - t0)) dc=$((CPU_NOW - c0))
  echo "built in ${dt}s (${dc}s CPU, load $(cut -d' ' -f1-3 /proc/loadavg)) on $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$stamp"
  exec {lock}>&-
  log "$name $version: done in ${dt}s wall, ${dc}s CPU (user+sys)"
}

# copy_module MOD VERSION DEST: a writable copy of a module (for modules whose go.mod has
# replace directives, which `go install mod@version` refuses).
copy_module() {
  local mod=$1 ver=$2 dest=$3 dir
  dir=$(cd /tmp && go mod download -json "$mod@$ver" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" && -d "$dir" ]] || { echo "cannot download $mod@$ver" >&2; return 1; }
  rm -rf "$dest"
  cp -r "$dir" "$dest"
  chmod -R u+w "$dest"
}

link() { ln -sfn "$1" "$BIN/$(basename "$1")"; }

# ---------------------------------------------------------------- Debian packages
install_apt() {
  local missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"install ok installed"* ]] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
step_apt() {
  # Not stamped: cheap to check, and a new machine may have lost the packages.
  local t0=$SECONDS
  install_apt
  log "debian packages (${DEBIAN_PACKAGES[*]}): ok in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- helm
build_helm() {
  local out="$OPT/helm-$HELM_VERSION" minor k8s=""
  # Helm's Makefile stamps the Kubernetes version its client libraries speak; without it
  # .Capabilities.KubeVersion (helm template, lint) says v1.20.0.
  minor=$(cd /tmp && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  minor=$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$minor/go.mod")
  for p in pkg/lint/rules pkg/chartutil; do
    k8s+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$minor"
  done
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION $k8s" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  link "$out/helm"
}

# ---------------------------------------------------------------- kubeconform
build_kubeconform() {
  local out="$OPT/kubeconform-$KUBECONFORM_VERSION"
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION")
  link "$out/kubeconform"
}

# ---------------------------------------------------------------- helm-unittest
# Built from source (its go.mod has a replace directive); installed as a local plugin
# folder whose plugin.yaml has no install hook (the upstream hook downloads a binary).
build_helm_unittest() {
  local src="$SRC/helm-unittest-$HELM_UNITTEST_VERSION" plug="$TOOLS/helm-plugins/unittest"
  copy_module github.com/helm-unittest/helm-unittest "$HELM_UNITTEST_VERSION" "$src"
  (cd "$src" && "${NICE[@]}" go build -mod=mod "${GOBUILD_FLAGS[@]}" -ldflags "-s -w" -o untt ./cmd/helm-unittest)
  rm -rf "$plug" && mkdir -p "$plug"
  mv "$src/untt" "$plug/untt"
  cat >"$plug/plugin.yaml" <<EOF
name: "unittest"
version: "${HELM_UNITTEST_VERSION#v}"
usage: "unittest for helm charts"
description: "helm-unittest built from source by gatehouse scripts/tools.sh (no install hook)"
ignoreFlags: false
command: "\$HELM_PLUGIN_DIR/untt"
EOF
  rm -rf "$src"
}

# ---------------------------------------------------------------- kwok / kwokctl
build_kwok() {
  local out="$OPT/kwok-$KWOK_VERSION"
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION")
  link "$out/kwok"
  link "$out/kwokctl"
}

# ---------------------------------------------------------------- Kubernetes binaries
# k8s.io/kubernetes points its staging modules at ./staging/...; re-point each at the
# published k8s.io/<name> v0.<minor>.<patch> and build with -mod=mod. The version ldflags
# make `kubectl version` parse the server version.
build_kube() {
  local src="$SRC/kubernetes-$KUBE_VERSION" out="$OPT/kubernetes-$KUBE_VERSION"
  local staging_ver="v0.${KUBE_VERSION#v1.}" minor
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  copy_module k8s.io/kubernetes "$KUBE_VERSION" "$src"
  (
    cd "$src"
    local edits=()
    while read -r mod; do edits+=("-replace=$mod=$mod@$staging_ver"); done < <(
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' go.mod)
    go mod edit "${edits[@]}"
    local pkg=k8s.io/component-base/version
    local ld="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
    ld+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    mkdir -p "$out"
    # One invocation: the four share most packages, and one command's link (serial)
    # overlaps the others' compiles.
    "${NICE[@]}" go build -mod=mod "${GOBUILD_FLAGS[@]}" -ldflags "$ld" -o "$out/" \
      ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubectl
  )
  mkdir -p "$TOOLS/kube"
  cp "$src/api/openapi-spec/swagger.json" "$TOOLS/kube/swagger-$KUBE_VERSION.json"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do link "$out/$cmd"; done
  rm -rf "$src"
}

# ---------------------------------------------------------------- crane
build_crane() {
  local out="$OPT/crane-$CRANE_VERSION"
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION")
  link "$out/crane"
}

# ---------------------------------------------------------------- cosign
# The release signer and the verifier users run (`cosign verify --key`). Key-based only:
# keyless signing needs the public Fulcio/Rekor services.
build_cosign() {
  local out="$OPT/cosign-$COSIGN_VERSION"
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" \
    -ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION" \
    "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION")
  link "$out/cosign"
}

# ---------------------------------------------------------------- cyclonedx-gomod
build_cyclonedx_gomod() {
  local out="$OPT/cyclonedx-gomod-$CYCLONEDX_GOMOD_VERSION"
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" -ldflags "-s -w" \
    "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$CYCLONEDX_GOMOD_VERSION")
  link "$out/cyclonedx-gomod"
}

# ---------------------------------------------------------------- kubeconform schemas
# Standalone (all $refs inlined) JSON schemas generated offline from the pinned
# Kubernetes swagger.json, plus the openAPIV3Schema of the CRDs the chart renders:
# HTTPRoute and ReferenceGrant (Gateway API), ServiceMonitor (prometheus-operator),
# Traefik's Middleware and the rest of its CRD file, Envoy Gateway's SecurityPolicy.
# Layout: $TOOLS/schemas/v<ver>-standalone[-strict]/<kind>-<group>-<version>.json
build_schemas() {
  [[ -f "$TOOLS/kube/swagger-$KUBE_VERSION.json" ]] || {
    local d; d=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$TOOLS/kube" && cp "$d/api/openapi-spec/swagger.json" "$TOOLS/kube/swagger-$KUBE_VERSION.json"
  }
  local gw prom traefik eg
  gw=$(cd /tmp && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  prom=$(cd /tmp && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  traefik=$(cd /tmp && go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  eg=$(cd /tmp && go mod download -json "github.com/envoyproxy/gateway@$ENVOY_GATEWAY_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$TOOLS/crds"
  cp "$gw/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" "$TOOLS/crds/"
  cp "$gw/config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml" "$TOOLS/crds/"
  cp "$prom/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$TOOLS/crds/"
  cp "$traefik/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml" "$TOOLS/crds/traefik.io_crds.yaml"
  cp "$eg/charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_securitypolicies.yaml" "$TOOLS/crds/"
  chmod u+w "$TOOLS"/crds/*.yaml
  rm -rf "$TOOLS/schemas" && mkdir -p "$TOOLS/schemas"
  (cd "$REPO/internal/deploycheck/schemagen" && go run . \
    -swagger "$TOOLS/kube/swagger-$KUBE_VERSION.json" -version "$KUBE_VERSION" \
    -out "$TOOLS/schemas" "$TOOLS"/crds/*.yaml)
}

# ---------------------------------------------------------------- tilt
# Built from source: the proxy lacks a checksum-database entry for it (GONOSUMDB), its
# go.sum has a stale github.com/docker/buildx line (dropped, re-resolved), it needs cgo, and the web UI
# (built with yarn upstream) is replaced by a placeholder index.html.
build_tilt() {
  local src="$SRC/tilt-$TILT_VERSION" out="$OPT/tilt-$TILT_VERSION"
  GONOSUMDB=github.com/tilt-dev/tilt copy_module github.com/tilt-dev/tilt "$TILT_VERSION" "$src"
  (
    cd "$src"
    rm -rf vendor
    sed -i '/github.com\/docker\/buildx /d' go.sum
    printf '<!doctype html><title>Tilt</title><p>Web UI not bundled in this build; use the CLI.</p>\n' >pkg/assets/build/index.html
    mkdir -p "$out"
    # cgo on: tilt parses with github.com/smacker/go-tree-sitter (C).
    CGO_ENABLED=1 "${NICE[@]}" go build -mod=mod "${GOBUILD_FLAGS[@]}" \
      -ldflags "-s -w -X main.version=${TILT_VERSION#v} -X main.commit=module-proxy" \
      -o "$out/tilt" ./cmd/tilt
  )
  link "$out/tilt"
  rm -rf "$src"
}

# ---------------------------------------------------------------- caddy, oauth2-proxy
# go_install NAME VERSION PACKAGE: a plain `go install` into $OPT/NAME-VERSION, linked.
# Caddy's standard build (cmd/caddy) has forward_auth. Traefik v3 cannot be built
# here: 15 of its modules (lego DNS providers, containous/go-http-auth, its own
# dynamic/ext module) answer 403 at the module proxy.
go_install() {
  local out="$OPT/$1-$2"
  mkdir -p "$out"
  (cd /tmp && GOBIN="$out" "${NICE[@]}" go install "${GOBUILD_FLAGS[@]}" -ldflags "-s -w" "$3@$2")
  link "$out/$1"
}
build_caddy() { go_install caddy "$CADDY_VERSION" github.com/caddyserver/caddy/v2/cmd/caddy; }
build_oauth2_proxy() { go_install oauth2-proxy "$OAUTH2_PROXY_VERSION" github.com/oauth2-proxy/oauth2-proxy/v7; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want=("$@")
((${#want[@]})) || want=("${COMPONENTS[@]}")
T0=$SECONDS
for c in "${want[@]}"; do
  case "$c" in
    apt) step_apt ;;
    helm) run_step helm "$HELM_VERSION-b$HELM_BUILD" build_helm ;;
    kubeconform) run_step kubeconform "$KUBECONFORM_VERSION" build_kubeconform ;;
    helm-unittest) run_step helm-unittest "$HELM_UNITTEST_VERSION" build_helm_unittest ;;
    kwok) run_step kwok "$KWOK_VERSION" build_kwok ;;
    kube) run_step kube "$KUBE_VERSION" build_kube ;;
    crane) run_step crane "$CRANE_VERSION" build_crane ;;
    cosign) run_step cosign "$COSIGN_VERSION" build_cosign ;;
    cyclonedx-gomod) run_step cyclonedx-gomod "$CYCLONEDX_GOMOD_VERSION" build_cyclonedx_gomod ;;
    schemas) run_step schemas "$KUBE_VERSION-gw$GATEWAY_API_VERSION-po$PROM_OPERATOR_VERSION-tr$TRAEFIK_VERSION-eg$ENVOY_GATEWAY_VERSION-$(cat "$REPO"/internal/deploycheck/schemagen/*.go | sha256sum | cut -c1-12)" build_schemas ;;
    tilt) run_step tilt "$TILT_VERSION" build_tilt ;;
    caddy) run_step caddy "$CADDY_VERSION" build_caddy ;;
    oauth2-proxy) run_step oauth2-proxy "$OAUTH2_PROXY_VERSION" build_oauth2_proxy ;;
    *) echo "unknown component: $c (known: ${COMPONENTS[*]} ${OPTIONAL_COMPONENTS[*]})" >&2; exit 2 ;;
  esac
done
log "all requested tools ready in $((SECONDS - T0))s (cache: $TOOLS)"
