#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian packages, Go tools), starts the services they use, runs every
# stage, stops the services. CI runs exactly this (.ci/run).
#
#   ./scripts/test.sh            all stages
#   STAGES="unit" ./scripts/test.sh   only the named stages (space-separated)
#
# The deploy tools (scripts/tools.sh: helm, kube-*, kwok, tilt, cosign, ...;
# Caddy for the proxy tests) take most of a cold run. They build in the
# background from the start, at the lowest CPU and I/O priority, on the CPU
# the test stages leave idle; a stage that needs one waits for it (and lifts
# the build's priority while it waits). docs/DEPLOY.md ("A cold CI run") has
# the measured times and how to re-measure them.
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

RUN_DIR=$(mktemp -d /tmp/gatehouse-test.XXXXXX)
log() { printf '\n==> %s\n' "$*"; }
want() { [[ " $STAGES " == *" $1 "* ]]; }

# A nearly full disk fails stages far from the cause (podman reported
# "read/write on closed pipe" while storing an image layer): say so first.
# The Go build cache grows with every variant built; `go clean -cache` or
# deleting its entries older than a day frees it.
# On a fresh machine GOCACHE does not exist yet: ask about the nearest
# folder that does (df fails on a missing path, and set -e would end the
# run here without a word).
for d in /tmp "$(go env GOCACHE 2>/dev/null || echo /tmp)"; do
  while [[ ! -e $d && $d != / ]]; do d=$(dirname "$d"); done
  free_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
  if [[ -n $free_kb ]] && ((free_kb < 8 * 1024 * 1024)); then
    printf '\n==> WARNING: only %d MiB free on the disk of %s; the image and Tilt stages need several GiB\n' $((free_kb / 1024)) "$d"
  fi
done

# cpu_now: CPU_NOW = user+system CPU seconds of this shell's finished children
# (`times` here, not in a $(...) subshell, whose children are its own).
cpu_now() {
  times >"$RUN_DIR/times"
  CPU_NOW=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
    printf "%d", s }' "$RUN_DIR/times")
}

# stage NAME FUNC: run a requested stage and record its wall and CPU time.
declare -A took cpu
ran=()
stage() {
  local name=$1; shift
  want "$name" || return 0
  log "stage $name"
  local t0=$SECONDS c0
  cpu_now; c0=$CPU_NOW
  "$@"
  took[$name]=$((SECONDS - t0))
  cpu_now
  cpu[$name]=$((CPU_NOW - c0 - ${bg_cpu_in[$name]:-0}))
  ran+=("$name")
  log "stage $name: ok in ${took[$name]}s wall, ${cpu[$name]}s CPU"
}

# --- background tool builds ------------------------------------------------------
# One `scripts/tools.sh` in a session of its own (killable as a group) at nice
# 19 / idle I/O: CFS gives it a weight of 15 against 1024 for the stages, so
# it takes CPU only when they leave some. Caddy first: the unit stage needs it.
BG_PID="" BG_LOG=$RUN_DIR/tools.log
declare -A bg_cpu_in
start_tool_builds() {
  local list=(caddy) c
  if want deploy; then
    for c in $("$ROOT/scripts/tools.sh" --components); do [[ $c == apt || $c == caddy ]] || list+=("$c"); done
  fi
  log "building tools in the background (nice 19): ${list[*]} (log: $BG_LOG)"
  setsid nice -n 19 ionice -c 3 "$ROOT/scripts/tools.sh" "${list[@]}" >"$BG_LOG" 2>&1 </dev/null &
  BG_PID=$!
}
# renice_builds N: the background build's priority (it and every process it started).
renice_builds() {
  [[ -n $BG_PID ]] && kill -0 "$BG_PID" 2>/dev/null || return 0
  renice -n "$1" -g "$BG_PID" >/dev/null 2>&1 || true
  if (($1 < 19)); then ionice -c 2 -n 4 -P "$BG_PID" 2>/dev/null || true; else ionice -c 3 -P "$BG_PID" 2>/dev/null || true; fi
}
# need_tools COMPONENT...: the tools a stage needs, waiting for the
# background build (at the stages' priority while waiting) or building them.
need_tools() {
  renice_builds 0
  "$ROOT/scripts/tools.sh" "$@" | sed 's/^/  /'
  renice_builds 19
}
# wait_tool_builds STAGE: wait for the whole background build and print its
# log (each tool's wall and CPU time); a failure is reported with it.
wait_tool_builds() {
  local st=$1 rc=0 c0
  [[ -n $BG_PID ]] || return 0
  renice_builds 0
  log "waiting for the background tool builds"
  cpu_now; c0=$CPU_NOW
  wait "$BG_PID" || rc=$?
  cpu_now
  bg_cpu_in[$st]=$((CPU_NOW - c0))
  BG_PID=""
  sed 's/^/  /' "$BG_LOG"
  if ((rc != 0)); then
    echo "!!! the background tool build FAILED (exit $rc): its log is above (the stages' own scripts/tools.sh calls built what was missing)" >&2
  fi
  log "background tool builds: ${bg_cpu_in[$st]}s CPU in all (per tool above)"
}

# --- services ------------------------------------------------------------------
# The shared Redis listens on a unix socket in its own directory: no TCP
# port that another process on the machine could hold.
# (GATEHOUSE_TEST_REDIS_PORT, which named its port before, is not needed.)
REDIS_DIR=$RUN_DIR/redis
mkdir -p "$REDIS_DIR"
REDIS_SOCKET=$REDIS_DIR/redis.sock
cleanup() {
  local rc=$? pid bg_rc=0
  if [[ -n $BG_PID ]]; then
    if kill -0 "$BG_PID" 2>/dev/null; then
      echo "stopping the background tool build (pid $BG_PID)" >&2
      kill -TERM -- "-$BG_PID" 2>/dev/null || true
    fi
    wait "$BG_PID" 2>/dev/null || bg_rc=$?
    # A failure of its own (not our TERM) is shown even if no stage needed it yet.
    if ((bg_rc != 0 && bg_rc != 143)); then
      echo "!!! the background tool build FAILED (exit $bg_rc); the end of its log:" >&2
      tail -40 "$BG_LOG" >&2 || true
    fi
  fi
  if [[ -f $REDIS_DIR/redis.pid ]]; then
    pid=$(cat "$REDIS_DIR/redis.pid")
    kill "$pid" 2>/dev/null || true
    # Redis writes its last log lines while it exits: wait, or rm races it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$RUN_DIR" || true
  exit "$rc" # the stages' verdict, not the clean-up's
}
trap cleanup EXIT
# bash runs the EXIT trap on a signal only when the signal is trapped: a
# cancelled CI job must still stop Redis and the background build.
trap 'exit 130' INT
trap 'exit 143' TERM

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
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
  fi
  # The deploy check's Debian packages too, now: apt must not run beside the
  # background build.
  if want deploy; then "$ROOT/scripts/tools.sh" apt; fi
  go mod download
  # panva's oidc-provider, an independent OpenID Certified provider, for the
  # interop tests (internal/interop): exact versions from its package-lock.
  # It needs Node.js >= 20.19 (the machine's; Debian's nodejs is older).
  if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' 2>/dev/null; then
    echo "Node.js >= 20.19 is needed for internal/interop (found: $(node --version 2>/dev/null || echo none))"; return 1
  fi
  (cd "$ROOT/internal/interop/node" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
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
  need_tools caddy # the forward-auth proxy tests run real Caddy (internal/testenv)
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
  # The tests build the binary themselves; compiled here first, a cold build
  # cache is not spent inside -timeout.
  go build -o /dev/null ./cmd/gatehouse
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

# Every fuzz target in the repository (func FuzzX(f *testing.F) in a
# *_test.go), each for $FUZZTIME; a failing input is written to the
# package's testdata/fuzz/<target>/ and then replays in every `go test` run.
fuzz_targets() {
  grep -rHo --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' cmd internal |
    sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]+).*#./\1 \2#' | sort
}
fuzz() {
  local pkg target n=0
  while read -r pkg target; do
    log "fuzz $target ($pkg, $FUZZTIME)"
    go test -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
    n=$((n + 1))
  done < <(fuzz_targets)
  ((n > 0)) || { echo "no fuzz targets found"; return 1; }
}

bench() {
  # Every benchmark once, so none rots; speed itself is measured by
  # `go run ./cmd/gatehouse-load` and recorded in docs/PERFORMANCE.md.
  # With them, the one test that needs a build without -race (frame sizes:
  # internal/server/stack_test.go).
  go test -run '^TestDecision_FitsTheStackAConnectionIsShrunkTo$' -bench . -benchtime=1x -benchmem -count=1 -timeout 10m ./...
}

# Chart, manifests, image and Tiltfile, proven on a real API server: pinned
# tools built once into $GATEHOUSE_TOOLS (outside the repo), then the checks.
# Tilt, the last tool the background builds, serves only the last check:
# the others run while it finishes (deploy-check.sh waits for it).
deploy() {
  renice_builds 0 # the background build is on the critical path from here
  local c others=()
  for c in $("$ROOT/scripts/tools.sh" --components); do [[ $c == tilt ]] || others+=("$c"); done
  ./scripts/tools.sh "${others[@]}"
  ./scripts/deploy-check.sh
  wait_tool_builds deploy
}

# The tools build while the first stages run (see the top of this file).
if want unit || want deploy; then start_tool_builds; fi

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

log "stage durations: wall and CPU (user+sys) in seconds; elapsed ${SECONDS}s in all"
printf '  %-12s %6s %6s\n' stage wall cpu
for k in "${ran[@]}"; do printf '  %-12s %6d %6d\n' "$k" "${took[$k]}" "${cpu[$k]}"; done
for k in "${!bg_cpu_in[@]}"; do printf '  %-12s %6s %6d  (background tool builds, waited for in %s)\n' tools - "${bg_cpu_in[$k]}" "$k"; done
