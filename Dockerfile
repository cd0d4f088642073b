# syntax=docker/dockerfile:1
# Gatehouse production image: a static Go binary on distroless, non-root, no shell.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t gatehouse .
#
# Releases are built by scripts/release.sh instead (no container engine; reproducible;
# SBOM and signatures), on the same distroless base: it reads the pin from this file.
#
# Base images are pinned by digest (multi-arch index digests); refresh them deliberately,
# e.g. `crane digest golang:1.26` / `crane digest gcr.io/distroless/static-debian12:nonroot`.
# internal/deploycheck checks this file's rules (pinned bases, no latest, non-root USER,
# exec-form ENTRYPOINT/CMD, HEALTHCHECK).

# The build stage runs on the builder's platform and cross-compiles (no emulation).
FROM --platform=$BUILDPLATFORM golang:1.26@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Module download is its own layer: it is rebuilt only when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# .git is not in the build context (.dockerignore): the commit comes in as an argument.
ARG REVISION=unknown
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# -tags production: no development identity provider in the image (and -dev refuses);
# grpcnotrace: no gRPC debug pages. Both keep html/template out, which keeps the binary small.
RUN GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -tags production,grpcnotrace -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${REVISION}" -o /out/gatehouse ./cmd/gatehouse

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot (65532); no shell.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Sign-in with ZITADEL (OIDC code flow + PKCE)" \
      org.opencontainers.image.source="https://github.com/gatehouse/gatehouse" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/gatehouse /gatehouse
USER 65532:65532
EXPOSE 3000
# No shell in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 CMD ["/gatehouse", "healthcheck"]
ENTRYPOINT ["/gatehouse"]
