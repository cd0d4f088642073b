#!/usr/bin/env bash
# govulncheck against an offline vulnerability database.
#
# govulncheck's online database is not reachable from CI here, but the Go
# vulnerability database is also published as a Go module (golang.org/x/vulndb):
# its data/osv folder, indexed with golang.org/x/vulndb/cmd/indexdb, is a
# database govulncheck reads with -db file://. Tools and databases are cached
# outside the repository, under $GATEHOUSE_TOOLS (default /var/cache/gatehouse-tools).
#
#   scripts/vulncheck.sh                      newest database the module proxy has
#   VULNDB_VERSION=v0.0.0-2026... scripts/vulncheck.sh   a fixed database
#   scripts/vulncheck.sh -show verbose        extra arguments go to govulncheck
#
# Exits non-zero when a vulnerability is reachable from our code.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Analyse with the toolchain go.mod pins: the standard library is part of what
# is checked, and the machine's older go would report its own vulnerabilities.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

TOOLS=${GATEHOUSE_TOOLS:-/var/cache/gatehouse-tools}
GOVULNCHECK_VERSION=v1.9.0
# indexdb is built from this vulndb version; the data may be newer (below).
VULNDB_TOOL_VERSION=v0.0.0-20261105234957-e22db6528018
# Fallback database when the proxy cannot say which version is the newest.
VULNDB_PINNED=v0.0.0-20261105234957-e22db6528018

log() { printf '[vulncheck] %s\n' "$*" >&2; }

# go_tool NAME PKG VERSION: build PKG@VERSION once into the cache, print its path.
go_tool() {
  local name=$1 pkg=$2 version=$3 dir="$TOOLS/go-tools/$1@$3"
  if [[ ! -x $dir/$name ]]; then
    log "building $pkg@$version (once; cached in $dir)"
    mkdir -p "$dir.tmp"
    (cd / && GOBIN="$dir.tmp" nice -n 10 go install "$pkg@$version") >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/$name"
}

version=${VULNDB_VERSION:-latest}
if [[ $version == latest ]]; then
  if v=$(cd / && go list -m -f '{{.Version}}' golang.org/x/vulndb@latest 2>/dev/null) && [[ -n $v ]]; then
    version=$v
  else
    version=$VULNDB_PINNED
    log "the module proxy did not answer; using the pinned database $version"
  fi
fi

db="$TOOLS/vulndb/$version"
if [[ ! -f $db/index/db.json ]]; then
  indexdb=$(go_tool indexdb golang.org/x/vulndb/cmd/indexdb "$VULNDB_TOOL_VERSION")
  src=$(cd / && go mod download -json "golang.org/x/vulndb@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $src/data/osv ]] || { log "golang.org/x/vulndb@$version has no data/osv"; exit 1; }
  log "indexing $(find "$src/data/osv" -name '*.json' | wc -l) advisories from golang.org/x/vulndb@$version"
  rm -rf "$db.tmp" && mkdir -p "$(dirname "$db")"
  "$indexdb" -vulns "$src/data/osv" -out "$db.tmp"
  rm -rf "$db" && mv "$db.tmp" "$db"
fi

govulncheck=$(go_tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION")
log "database golang.org/x/vulndb@$version (its date is in the pseudo-version), $(go version)"
cd "$ROOT"
exec nice -n 10 "$govulncheck" -db "file://$db" "$@" ./...
