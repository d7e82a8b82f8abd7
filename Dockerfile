# syntax=docker/dockerfile:1
# TimeFusion: release build (the `production` profile), then a small runtime image running as
# a non-root user.

FROM rust:1.95-slim-bookworm AS build
# `production`: the release build with ThinLTO (Cargo.toml says what it costs and gains);
# `--build-arg PROFILE=release` builds faster, without LTO.
ARG PROFILE=production
WORKDIR /src
# make: tikv-jemalloc-sys builds jemalloc, the server's allocator, from source.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src bench && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > bench/ingest.rs \
    && cargo build --profile "$PROFILE" --locked --bin timefusion \
    && rm -rf src bench
COPY src src
COPY schemas schemas
COPY bench bench
RUN touch src/main.rs src/lib.rs && cargo build --profile "$PROFILE" --locked --bin timefusion \
    && cp "target/$PROFILE/timefusion" /src/timefusion

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/timefusion --create-home timefusion
COPY --from=build /src/timefusion /usr/local/bin/timefusion
USER timefusion
WORKDIR /var/lib/timefusion
ENV TIMEFUSION_DATA_DIR=/var/lib/timefusion \
    PGWIRE_HOST=0.0.0.0 \
    GRPC_HOST=0.0.0.0
VOLUME ["/var/lib/timefusion"]
EXPOSE 5432 50051 8080
# Healthy while /ready answers 200: recovery done, WAL writable, object store reachable
# (bash's /dev/tcp: no extra packages). A long WAL replay is covered by the start period.
HEALTHCHECK --interval=10s --timeout=8s --start-period=120s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TIMEFUSION_HTTP_PORT:-8080} && printf 'GET /ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/timefusion"]
