# syntax=docker/dockerfile:1
# Siesta's image: one static binary, /siesta, run as a non-root user on a
# distroless base (no shell, no package manager). The same image runs both
# Deployments: `siesta controller` and `siesta proxy` (deploy/).
#
#   docker build -t siesta:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/siesta:0.1.0 --push .
#
# Each platform builds natively on Alpine, whose Rust targets musl and links
# statically, so there is no cross toolchain to set up.
ARG RUST_VERSION=1.89
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM rust:${RUST_VERSION}-alpine AS build
# ring (rustls' crypto) compiles C and assembly.
RUN apk add --no-cache musl-dev gcc make
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binary is copied
# out of the cached target directory before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin siesta \
 && cp target/release/siesta /siesta \
 && strip /siesta \
 && /siesta --version

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="siesta" \
      org.opencontainers.image.description="Sleep mode for Kubernetes: scale idle namespaces to zero, wake them on the first request" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /siesta /siesta
# The nonroot user of the distroless base; numeric so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080 8081 8082 8443
ENTRYPOINT ["/siesta"]
