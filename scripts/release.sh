#!/usr/bin/env bash
# scripts/release.sh — publish a Gatehouse release to any OCI registry, in one go:
#
#   1. static binaries for linux/amd64 and linux/arm64 (-tags production,grpcnotrace,
#      -trimpath, version stamped, commit from the git checkout), reproducible;
#   2. one multi-arch image index on the distroless static:nonroot base pinned by digest
#      in the Dockerfile, assembled without a container engine (internal/release/ocibuild):
#      every timestamp is SOURCE_DATE_EPOCH (default: the commit's time), so the same
#      commit always gives the same digest;
#   3. a CycloneDX SBOM of each binary's modules (cyclonedx-gomod), attached to that
#      platform's image as an OCI 1.1 referrer;
#   4. cosign signatures (key-based) of the index, each platform image, each SBOM and the
#      chart;
#   5. the Helm chart, version and appVersion = VERSION, its default image pinned to the
#      index digest, pushed as an OCI artifact.
#
#   scripts/release.sh --prepare VERSION    CHANGELOG.md and Chart.yaml for the release commit
#   scripts/release.sh VERSION --registry registry.example.com/acme --key ~/keys/cosign.key
#   scripts/release.sh VERSION --build-only --out DIR     build, push nothing (prints the digest)
#
# Options:
#   --registry REG   image REG/gatehouse:VERSION, chart oci://REG/charts/gatehouse:VERSION
#   --key FILE       cosign private key (password in COSIGN_PASSWORD)
#   --base REF       base image index, REPO@sha256:... or oci:DIR (default: the Dockerfile's)
#   --insecure       the registry speaks plain http (a local test registry)
#   --out DIR        where artifacts go (default out/release/VERSION)
#
# A release version (no "-pre" suffix) needs a clean work tree and a CHANGELOG.md
# section "## [VERSION]"; pre-releases (1.2.0-rc.1) need neither. Needs go, crane,
# cosign, cyclonedx-gomod, helm and jq (scripts/tools.sh installs them).
# Registry credentials come from the Docker config (crane/cosign/helm registry login).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

die() { printf 'release: %s\n' "$*" >&2; exit 1; }
log() { printf '[release %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

PREPARE="" BUILD_ONLY="" REGISTRY="" KEY="" BASE="" INSECURE="" OUT="" VERSION=""
while (($#)); do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    --registry) REGISTRY=${2:?}; shift ;;
    --key) KEY=${2:?}; shift ;;
    --base) BASE=${2:?}; shift ;;
    --insecure) INSECURE=1 ;;
    --out) OUT=${2:?}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [[ -z "$VERSION" ]] || die "one VERSION only"; VERSION=$1 ;;
  esac
  shift
done
[[ -n "$VERSION" ]] || die "usage: scripts/release.sh [--prepare] VERSION [--registry REG --key FILE | --build-only]"
VERSION=${VERSION#v}
[[ "$VERSION" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION $VERSION is not SemVer (1.2.3 or 1.2.3-rc.1): chart versions must be"
PRERELEASE=""
[[ "$VERSION" == *-* ]] && PRERELEASE=1

# ------------------------------------------------------------------ --prepare
# Moves CHANGELOG.md's Unreleased notes under "## [VERSION] - date" (leaving an empty
# Unreleased section) and sets the chart's version and appVersion: the release commit.
if [[ -n "$PREPARE" ]]; then
  ROOT=${RELEASE_ROOT:-$REPO} # the deploy check prepares a copy
  cl="$ROOT/CHANGELOG.md" chart="$ROOT/charts/gatehouse/Chart.yaml"
  grep -q '^## \[Unreleased\]' "$cl" || die "$cl has no '## [Unreleased]' section"
  ! grep -q "^## \[$VERSION\]" "$cl" || die "$cl already has a section for $VERSION"
  awk -v v="$VERSION" -v d="$(date -u +%Y-%m-%d)" '
    /^## \[Unreleased\]/ && !done { print; print ""; print "## [" v "] - " d; done = 1; next }
    { print }' "$cl" >"$cl.tmp" && mv "$cl.tmp" "$cl"
  sed -i -e "s/^version: .*/version: $VERSION/" -e "s/^appVersion: .*/appVersion: \"$VERSION\"/" "$chart"
  log "prepared $VERSION: $cl, $chart"
  echo "next: review, then git commit -am 'Release $VERSION' && git tag v$VERSION && scripts/release.sh $VERSION --registry REG --key cosign.key"
  exit 0
fi

# ------------------------------------------------------------------ checks
for b in go crane jq; do command -v "$b" >/dev/null || die "$b not found (scripts/tools.sh)"; done
command -v cyclonedx-gomod >/dev/null || die "cyclonedx-gomod not found (scripts/tools.sh)"
if [[ -z "$BUILD_ONLY" ]]; then
  [[ -n "$REGISTRY" ]] || die "--registry is required (or --build-only)"
  [[ -n "$KEY" && -f "$KEY" ]] || die "--key FILE (a cosign private key) is required: releases are signed"
  case "$(cd "$(dirname "$KEY")" && pwd -P)/" in
    "$(pwd -P)/"*) die "--key $KEY is inside the repository: keep the signing key outside it (a key here can be committed or copied into an image)" ;;
  esac
  for b in cosign helm; do command -v "$b" >/dev/null || die "$b not found (scripts/tools.sh)"; done
fi
if [[ -z "$PRERELEASE" ]]; then
  [[ -z "$(git status --porcelain)" ]] || die "release $VERSION from a dirty work tree: commit first (pre-releases may be dirty)"
  grep -q "^## \[$VERSION\]" CHANGELOG.md || die "CHANGELOG.md has no '## [$VERSION]' section: scripts/release.sh --prepare $VERSION"
fi
if [[ -z "$BASE" ]]; then
  # The Dockerfile's final FROM: one pin for `docker build` and for releases.
  BASE=$(awk 'toupper($1) == "FROM" { last = $2 } END { print last }' Dockerfile)
fi
[[ "$BASE" == oci:* || "$BASE" == *@sha256:* ]] || die "base $BASE is not pinned by digest"

OUT=${OUT:-out/release/$VERSION}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
COMMIT=$(git rev-parse HEAD)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}
PLATFORMS=(linux/amd64 linux/arm64)
# The exact toolchain go.mod pins (fetched through the module proxy if need be), whatever
# Go this machine has: the same commit must give the same binary everywhere.
GOTOOLCHAIN=$(awk '$1 == "toolchain" { print $2 }' go.mod)
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
INSECURE_CRANE=() INSECURE_COSIGN=() INSECURE_HELM=() INSECURE_OCIBUILD=()
if [[ -n "$INSECURE" ]]; then
  INSECURE_CRANE=(--insecure) INSECURE_COSIGN=(--allow-insecure-registry --allow-http-registry)
  INSECURE_HELM=(--plain-http) INSECURE_OCIBUILD=(-insecure)
fi
ocibuild() { (cd "$REPO/internal/release/ocibuild" && GOWORK=off GOFLAGS= go run . "$@"); }

# ------------------------------------------------------------------ 1. binaries + SBOMs
bins=()
for p in "${PLATFORMS[@]}"; do
  arch=${p#linux/} dir="$OUT/${p/\//-}"
  mkdir -p "$dir"
  log "build $p"
  # The Dockerfile's flags; -trimpath and no build timestamp (Go stamps none) make the
  # binary a function of the commit and the toolchain.
  # -buildvcs=true: the commit, its time and the tree's state go into the build info
  # (`gatehouse version`), whatever GOFLAGS says.
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -buildvcs=true -tags production,grpcnotrace -trimpath \
    -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$dir/gatehouse" ./cmd/gatehouse
  # The modules linked into this binary, read from its build info. Reproducible too: the
  # serial number is derived from what the SBOM describes, the timestamp is the epoch.
  h=$(printf 'gatehouse %s %s %s' "$VERSION" "$p" "$COMMIT" | sha256sum)
  # cyclonedx-gomod writes the purls' goarch/goos from `go env`, not from the binary: set them.
  GOOS=linux GOARCH=$arch cyclonedx-gomod bin -json -noserial -notimestamp -version "$VERSION" -output "$dir/sbom.raw.json" "$dir/gatehouse" 2>"$dir/sbom.log" ||
    { cat "$dir/sbom.log" >&2; die "cyclonedx-gomod $p"; }
  jq --arg serial "urn:uuid:${h:0:8}-${h:8:4}-5${h:13:3}-8${h:17:3}-${h:20:12}" \
    --arg t "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
    '.serialNumber = $serial | .metadata.timestamp = $t' "$dir/sbom.raw.json" >"$dir/sbom.cdx.json"
  rm "$dir/sbom.raw.json" "$dir/sbom.log"
  bins+=(-binary "$p=$dir/gatehouse")
done

# ------------------------------------------------------------------ 2. image index
SOURCE_URL=https://github.com/gatehouse/gatehouse
ann=(-annotation "org.opencontainers.image.title=gatehouse"
  -annotation "org.opencontainers.image.description=Sign-in with ZITADEL (OIDC code flow + PKCE)"
  -annotation "org.opencontainers.image.source=$SOURCE_URL"
  -annotation "org.opencontainers.image.version=$VERSION"
  -annotation "org.opencontainers.image.revision=$COMMIT"
  -annotation "org.opencontainers.image.licenses=Apache-2.0")
log "assemble the image index on $BASE"
DIGEST=$(ocibuild image -base "$BASE" -out "$OUT/oci" -epoch "$SOURCE_DATE_EPOCH" "${INSECURE_OCIBUILD[@]}" "${bins[@]}" "${ann[@]}")
echo "$DIGEST" >"$OUT/index.digest"
log "image index $DIGEST"
if [[ -n "$BUILD_ONLY" ]]; then
  echo "$DIGEST"
  exit 0
fi

# ------------------------------------------------------------------ push, attach, sign
IMAGE="$REGISTRY/gatehouse"
crane push "${INSECURE_CRANE[@]}" --index "$OUT/oci" "$IMAGE:$VERSION" >/dev/null 2>"$OUT/crane.log" ||
  { cat "$OUT/crane.log" >&2; die "crane push $IMAGE:$VERSION"; }
[[ "$(crane digest "${INSECURE_CRANE[@]}" "$IMAGE:$VERSION")" == "$DIGEST" ]] || die "the registry holds another digest for $IMAGE:$VERSION"
log "pushed $IMAGE:$VERSION@$DIGEST"

sign() { # REF@DIGEST...: key-based, no transparency log (it is public; a private key needs none)
  cosign sign --yes --key "$KEY" --tlog-upload=false "${INSECURE_COSIGN[@]}" \
    -a "org.opencontainers.image.version=$VERSION" "$@" >/dev/null 2>"$OUT/cosign.log" ||
    { cat "$OUT/cosign.log" >&2; die "cosign sign $*"; }
}
sign --recursive "$IMAGE@$DIGEST" # the index and every platform image

jq -n --arg image "$IMAGE" --arg tag "$VERSION" --arg digest "$DIGEST" --arg commit "$COMMIT" \
  --arg epoch "$SOURCE_DATE_EPOCH" '{image: $image, tag: $tag, digest: $digest, commit: $commit,
  source_date_epoch: ($epoch | tonumber), platforms: {}}' >"$OUT/release.json"
for p in "${PLATFORMS[@]}"; do
  pd=$(jq -r --arg os "${p%/*}" --arg arch "${p#*/}" \
    '.manifests[] | select(.platform.os == $os and .platform.architecture == $arch) | .digest' "$OUT/oci/index.json")
  sbom=$(ocibuild attach "${INSECURE_OCIBUILD[@]}" -subject "$IMAGE@$pd" -file "$OUT/${p/\//-}/sbom.cdx.json" \
    -artifact-type application/vnd.cyclonedx+json -epoch "$SOURCE_DATE_EPOCH")
  sign "$IMAGE@$sbom"
  jq --arg p "$p" --arg pd "$pd" --arg sbom "$sbom" '.platforms[$p] = {digest: $pd, sbom: $sbom}' \
    "$OUT/release.json" >"$OUT/release.tmp" && mv "$OUT/release.tmp" "$OUT/release.json"
  log "$p: $pd, SBOM $sbom (signed)"
done

# ------------------------------------------------------------------ chart
rm -rf "$OUT/chart" && mkdir -p "$OUT/chart" && cp -r charts/gatehouse "$OUT/chart/"
# The published chart installs exactly this image: repository and digest pinned.
sed -i -e "s#^  repository: .*#  repository: $IMAGE#" -e "s#^  digest: .*#  digest: \"$DIGEST\"#" "$OUT/chart/gatehouse/values.yaml"
grep -q "^  digest: \"$DIGEST\"" "$OUT/chart/gatehouse/values.yaml" || die "could not pin the image in the chart's values.yaml"
helm package "$OUT/chart/gatehouse" --version "$VERSION" --app-version "$VERSION" -d "$OUT" >/dev/null
helm push "$OUT/gatehouse-$VERSION.tgz" "oci://$REGISTRY/charts" "${INSECURE_HELM[@]}" >"$OUT/helm-push.log" 2>&1 ||
  { cat "$OUT/helm-push.log" >&2; die "helm push"; }
CHART_DIGEST=$(sed -n 's/^Digest: //p' "$OUT/helm-push.log")
[[ "$CHART_DIGEST" == sha256:* ]] || die "helm push printed no digest: $(cat "$OUT/helm-push.log")"
sign "$REGISTRY/charts/gatehouse@$CHART_DIGEST"
jq --arg c "oci://$REGISTRY/charts/gatehouse" --arg d "$CHART_DIGEST" '.chart = {ref: $c, digest: $d}' \
  "$OUT/release.json" >"$OUT/release.tmp" && mv "$OUT/release.tmp" "$OUT/release.json"
log "chart oci://$REGISTRY/charts/gatehouse:$VERSION@$CHART_DIGEST (signed)"

cat "$OUT/release.json"
cat >&2 <<EOF

Verify (cosign.pub next to $KEY):
  cosign verify --key cosign.pub --insecure-ignore-tlog $IMAGE:$VERSION
  cosign verify --key cosign.pub --insecure-ignore-tlog $REGISTRY/charts/gatehouse:$VERSION
Install:
  helm install gatehouse oci://$REGISTRY/charts/gatehouse --version $VERSION ...
EOF
