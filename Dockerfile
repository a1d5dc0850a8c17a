# syntax=docker/dockerfile:1
#
# alertcall in a container.
#
#   docker build -t alertcall .
#   docker run -d --name alertcall -p 8000:8000 --env-file alertcall.env -v alertcall-data:/data alertcall
#
# Health: GET /healthz answers "ok" while the process is up; GET /readyz answers 200 when the
# database is reachable and 503 otherwise. The runtime image has no curl, so there is no
# HEALTHCHECK here: probe those endpoints from the orchestrator (Kubernetes httpGet probes,
# a load balancer health check, ...).

# ---- build ----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies first, with placeholder sources, so that editing src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/alertcall-*

# The real sources. The SQL migrations under src/store/migrations and the dashboard under
# assets/ are compiled in (include_str!), so src/ and assets/ are all the build needs. If
# Cargo.toml ever declares [[bin]]/[[bench]]/[[test]] targets outside src/ with explicit paths,
# copy those directories here too.
COPY src ./src
COPY assets ./assets
RUN cargo build --release --locked \
    && cp target/release/alertcall /usr/local/bin/alertcall

# ---- run ------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: TLS to Vonage and to Postgres/Supabase.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so bind-mounted /data directories can be chowned to it (10001:10001)
# and orchestrators that require a non-root numeric user accept the image.
RUN groupadd --system --gid 10001 alertcall \
    && useradd --system --uid 10001 --gid alertcall --home-dir /data --no-create-home \
               --shell /usr/sbin/nologin alertcall \
    && mkdir /data \
    && chown alertcall:alertcall /data

COPY --from=builder /usr/local/bin/alertcall /usr/local/bin/alertcall

# Listen on all interfaces inside the container; keep the embedded SQLite database on the volume.
# Override DATABASE_URL with a postgres://... URL to use Postgres/Supabase instead.
ENV ALERTCALL_LISTEN=0.0.0.0:8000 \
    DATABASE_URL=sqlite:///data/alertcall.db

WORKDIR /data
VOLUME /data
EXPOSE 8000
USER 10001:10001

ENTRYPOINT ["alertcall"]
CMD ["serve"]
