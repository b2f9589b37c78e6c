# aia-chat as a small non-root image: the binary on distroless (glibc, libgcc, CA certificates;
# no shell, no package manager, no curl). `aia-chat healthcheck` is the health check.
#
#   docker build -t aia-chat:latest .
#   docker run -p 3015:3015 -v aia-data:/data aia-chat:latest
#
# SQLite and the secret key live in /data (a volume); with PostgreSQL (AIA_DATABASE_URL and
# AIA_SECRET_KEY) the container keeps nothing. See docs/deployment.md for several nodes.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: a stub of every target.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY crates/aia-embed/Cargo.toml crates/aia-embed/Cargo.toml
RUN mkdir -p src/bin/aia-bench benches crates/aia-embed/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > src/bin/aia-bench/main.rs \
 && echo 'fn main() {}' > benches/operator.rs && echo 'fn main() {}' > benches/cluster.rs \
 && touch crates/aia-embed/src/lib.rs \
 && cargo build --release --locked --bin aia-chat \
 && rm -rf src benches crates/aia-embed/src
COPY . .
# The stubs' build stamps are older than the real sources, so cargo rebuilds our crates.
RUN touch src/lib.rs src/main.rs crates/aia-embed/src/lib.rs \
 && cargo build --release --locked --bin aia-chat \
 && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/aia-chat /usr/local/bin/aia-chat
# The nonroot user (65532) owns the data directory.
COPY --from=build --chown=65532:65532 /data /data
ENV AIA_DATA_DIR=/data \
    AIA_ADDR=0.0.0.0:3015
USER 65532:65532
VOLUME ["/data"]
EXPOSE 3015
# Metrics (set AIA_METRICS_ADDR=0.0.0.0:9315 to reach them from outside the container; never publish
# them publicly).
EXPOSE 9315
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["aia-chat", "healthcheck", "--url", "http://127.0.0.1:3015", "--timeout", "4"]
ENTRYPOINT ["aia-chat"]
CMD ["serve"]
