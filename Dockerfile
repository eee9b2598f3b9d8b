# Builds the thumbnails binary and runs `thumbnails run` (migrate, worker,
# sidecar). Configuration comes from /app/config.yaml and THUMBNAILS_* env.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY migration ./migration
COPY testkit ./testkit
COPY src ./src
# The preview pages' askama templates, compiled into the binary.
COPY templates ./templates
# The Rubin alert schemas shipped inside the binary (GPL-3.0, see
# schemas/lsst/COPYRIGHT).
COPY schemas ./schemas
COPY tests ./tests
RUN cargo build --release --locked --bin thumbnails

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app thumbnails
WORKDIR /app
COPY --from=build /src/target/release/thumbnails /usr/local/bin/thumbnails
COPY config.yaml /app/config.yaml
RUN mkdir -p /app/persistentdata && chown thumbnails /app/persistentdata
USER thumbnails
EXPOSE 8642
ENTRYPOINT ["thumbnails", "--config", "/app/config.yaml"]
CMD ["run"]
