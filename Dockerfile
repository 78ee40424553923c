# Lifeboat in a container: the binary plus PostgreSQL's client tools (pg_dump, pg_restore, psql).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/lifeboat

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/lifeboat --create-home lifeboat
COPY --from=build /src/target/release/lifeboat /usr/local/bin/lifeboat
USER lifeboat
ENV LIFEBOAT_CONFIG=/etc/lifeboat/lifeboat.yaml
ENTRYPOINT ["lifeboat"]
CMD ["--help"]
