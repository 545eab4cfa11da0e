# syntax=docker/dockerfile:1
# Build stage: the whole toolchain, thrown away afterwards.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY benches benches
# Workspace members: cargo reads their manifests to build anything.
COPY clients/rust clients/rust
COPY examples examples
RUN cargo build --release --locked --bin latchkey

# Runtime stage: the binary, CA certificates and curl for the health check.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/latchkey --shell /usr/sbin/nologin latchkey \
 && mkdir -p /var/lib/latchkey \
 && chown latchkey:latchkey /var/lib/latchkey
COPY --from=build /src/target/release/latchkey /usr/local/bin/latchkey
USER latchkey
WORKDIR /var/lib/latchkey
ENV LATCHKEY_BIND=0.0.0.0:8080 \
    LATCHKEY_DATA_DIR=/var/lib/latchkey
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["latchkey"]
CMD ["serve"]
