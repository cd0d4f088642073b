#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian packages, Go tools), starts the services they use, runs every
# stage, stops the services. CI runs exactly this (.ci/run).
#
#   ./scripts/test.sh            all stages
#   STAGES="unit" ./scripts/test.sh   only the named stages (space-separated)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export GATEHOUSE_TOOLS=${GATEHOUSE_TOOLS:-/var/cache/gatehouse-tools}
export PATH="$GATEHOUSE_TOOLS/bin:$(go env GOPATH)/bin:$PATH"
# Build and test with the toolchain go.mod pins (fetched through the module
# proxy): the machine's go may be an older patch with standard-library
# vulnerabilities, and its go.env may say GOTOOLCHAIN=local.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
STAGES=${STAGES:-"deps lint staticcheck vulncheck unit soak fuzz bench browser deploy"}
STATICCHECK_VERSION=v0.8.2 # honnef.co/go/tools
# Per fuzz target. A count, not a duration: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a duration runs out
# while a worker is mid-input (golang/go#75804, fixed in 1.27); a count has
# no deadline to race. See docs/SECURITY.md "Fuzzing" to fuzz longer.
FUZZTIME=${FUZZTIME:-10000x}

declare -A took
log() { printf '\n==> %s\n' "$*"; }
stage() {
  local name=$1; shift
  [[ " $STAGES " == *" $name "* ]] || return 0
  log "stage $name"
  local t0=$SECONDS
  "$@"
  took[$name]=$((SECONDS - t0))
}

# --- services ------------------------------------------------------------------
# The shared Redis listens on a unix socket in its own directory: no TCP
# port that another process on the machine could hold.
# (GATEHOUSE_TEST_REDIS_PORT, which named its port before, is not needed.)
REDIS_DIR=$(mktemp -d)
REDIS_SOCKET=$REDIS_DIR/redis.sock
cleanup() {
  local rc=$? pid
  if [[ -f $REDIS_DIR/redis.pid ]]; then
    pid=$(cat "$REDIS_DIR/redis.pid")
    kill "$pid" 2>/dev/null || true
    # Redis writes its last log lines while it exits: wait, or rm races it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$REDIS_DIR" || true
  exit "$rc" # the stages' verdict, not the clean-up's
}
trap cleanup EXIT

start_redis() {
  redis-server --port 0 --unixsocket "$REDIS_SOCKET" --unixsocketperm 700 --save '' --appendonly no \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log"
  for _ in $(seq 50); do redis-cli -s "$REDIS_SOCKET" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -s "$REDIS_SOCKET" ping >/dev/null
  export GATEHOUSE_TEST_REDIS="unix://$REDIS_SOCKET"
  # The Redis outage test stops and restarts this server by itself.
  export GATEHOUSE_TEST_REDIS_SERVER="$(command -v redis-server)"
}

# --- stages ----------------------------------------------------------------------
deps() {
  local need=()
  command -v redis-server >/dev/null || need+=(redis-server)
  # The Sentinel failover experiments start real sentinels (a separate package).
  command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
  command -v chromium >/dev/null || need+=(chromium)
  command -v wrk >/dev/null || need+=(wrk) # the load test's throughput rounds (cmd/gatehouse-load)
  # nginx with auth_request, for the forward-auth proxy tests (internal/testenv).
  command -v nginx >/dev/null || need+=(nginx-light)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  go mod download
  # panva's oidc-provider, an independent OpenID Certified provider, for the
  # interop tests (internal/interop): exact versions from its package-lock.
  # It needs Node.js >= 20.19 (the machine's; Debian's nodejs is older).
  if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' 2>/dev/null; then
    echo "Node.js >= 20.19 is needed for internal/interop (found: $(node --version 2>/dev/null || echo none))"; return 1
  fi
  (cd "$ROOT/internal/interop/node" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  # Caddy (forward_auth) for the same tests: built once into the tool cache.
  "$ROOT/scripts/tools.sh" caddy
}

lint() {
  local unformatted
  unformatted=$(gofmt -l cmd internal templates)
  if [[ -n $unformatted ]]; then echo "gofmt needed: $unformatted"; return 1; fi
  # The pages' generated *_templ.go are committed (the image build and
  # `go run` need no generator); they must match the .templ sources.
  go tool templ generate -check -path templates -log-level warn
  go vet ./...
  go vet -tags production,grpcnotrace ./...   # the Dockerfile's build (no dev provider)
}

unit() {
  start_redis
  # -race catches data races in the refresh single-flight and the stores.
  # The soak has a stage of its own (below).
  go test -race -count=1 -timeout 15m -skip '^TestSoak' $(go list ./... | grep -v /internal/e2e)
}

# The short soak (docs/RELIABILITY.md): sign-ins, page views, refreshes and
# sign-outs against two instances per session store while the provider,
# Redis and one instance are restarted; it fails on an error outside the
# fault windows, a lost session (but those issue 19 is about) or a leak.
# Alone, so that a machine busy with every other package cannot pass for a
# fault. It starts its own redis-server and Gatehouse binaries.
soak() {
  go test -race -count=1 -timeout 10m -run '^TestSoak' ./cmd/gatehouse-load
}

# Browser end-to-end tests: the real binary driven through Debian's Chromium
# (installed by deps). They fail, never skip, without it. E2E_OUTPUT=DIR keeps
# each test's screenshots there.
browser() {
  local out=()
  if [[ -n ${E2E_OUTPUT:-} ]]; then out=(-artifacts -outputdir "$E2E_OUTPUT"); fi
  go test -count=1 -timeout 6m "${out[@]}" ./internal/e2e
}

staticcheck_stage() {
  local dir="$GATEHOUSE_TOOLS/go-tools/staticcheck@$STATICCHECK_VERSION"
  if [[ ! -x $dir/staticcheck ]]; then
    log "building staticcheck $STATICCHECK_VERSION (once; cached in $dir)"
    mkdir -p "$dir.tmp"
    (cd / && GOBIN="$dir.tmp" nice -n 10 go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  "$dir/staticcheck" ./...
  "$dir/staticcheck" -tags production,grpcnotrace ./...   # the Dockerfile's build
}

vulncheck() { "$ROOT/scripts/vulncheck.sh"; }

# Each fuzz target briefly; a failing input is written to the package's
# testdata/fuzz/<target>/ and then replays in every `go test` run.
fuzz() {
  local pkg target
  while read -r pkg target; do
    log "fuzz $target ($pkg, $FUZZTIME)"
    go test -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
  done <<'TARGETS'
./internal/redirect FuzzIsLocalPath
./internal/redirect FuzzResolve
./internal/forward FuzzRead
./internal/forward FuzzEnvoyRules
./internal/forward FuzzParseRules
./internal/server FuzzCallbackQuery
./internal/session FuzzSessionCookie
./internal/session FuzzSessionPayload
./internal/session FuzzCookieValue
./internal/seal FuzzOpen
./internal/bearer FuzzVerify
TARGETS
}

bench() {
  # Every benchmark once, so none rots; speed itself is measured by
  # `go run ./cmd/gatehouse-load` and recorded in docs/PERFORMANCE.md.
  go test -run '^$' -bench . -benchtime=1x -benchmem -count=1 -timeout 10m ./...
}

# Chart, manifests, image and Tiltfile, proven on a real API server: pinned
# tools built once into $GATEHOUSE_TOOLS (outside the repo), then the checks.
deploy() {
  ./scripts/tools.sh
  ./scripts/deploy-check.sh
}

stage deps deps
stage lint lint
stage staticcheck staticcheck_stage
stage vulncheck vulncheck
stage unit unit
stage soak soak
stage fuzz fuzz
stage bench bench
stage browser browser
stage deploy deploy

log "stage durations (s)"
for k in "${!took[@]}"; do printf '  %-10s %4d\n' "$k" "${took[$k]}"; done
