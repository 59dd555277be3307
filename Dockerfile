# kubeplane: one image, two roles (`kubeplane operator`, `kubeplane agent`; the chart's args
# choose), plus the offline commands (render, validate, ...).
#
#   docker build -t kubeplane:0.1.0 .
#
# The builder stage makes a static musl binary; .ci/run builds the same binary with the same
# cargo command (there is no container engine in CI) and then this file's final stage with
# scripts/build-image.sh (buildah, daemonless; it reads the stage below and applies each
# instruction, refusing any it does not know), and checks the image's config and files with
# scripts/check-image.py.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# ring (rustls) compiles C code: musl-gcc comes from musl-tools. k8s-cri's build script
# (the CRI client) runs protoc: protobuf-compiler. Not pinned to a package version: the base
# image tag fixes the Debian release, and an exact pin would break with every point release
# of it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY core ./core
COPY src ./src
COPY benches ./benches
RUN cargo build --profile dist --locked --target x86_64-unknown-linux-musl --bin kubeplane \
    && cp target/x86_64-unknown-linux-musl/dist/kubeplane /kubeplane

FROM scratch
# In a cluster the client trusts the service account's CA only; the bundle is for a
# kubeconfig without a certificate-authority (the platform verifier then uses the system
# roots), e.g. `kubeplane rollout status` run from this image.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /kubeplane /kubeplane
# Non-root by default (the operator); the agent's pod spec runs it as root, without
# capabilities, to write the root-owned manifests.
USER 65532:65532
ENTRYPOINT ["/kubeplane"]
