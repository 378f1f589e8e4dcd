# syntax=docker/dockerfile:1
# strata container image: a release build of the strata binary on Debian bookworm-slim.
#
#   docker build -t strata .
#   docker run --rm -p 6380:6380 -v "$PWD/my-config.yaml:/etc/strata/config.yaml:ro" strata
#
# The config must `listen` on 0.0.0.0 (not 127.0.0.1) to be reachable from outside the container.
# docker-compose.yml runs it with docker/config.yaml in front of three Redis containers.

FROM rust:1-bookworm AS builder
WORKDIR /build
COPY . .
# Cache mounts keep the crate registry and the build directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
    && install -m 0755 target/release/strata /usr/local/bin/strata

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin strata
COPY --from=builder /usr/local/bin/strata /usr/local/bin/strata
COPY docker/config.yaml /etc/strata/config.yaml
USER strata
EXPOSE 6380 9380
ENTRYPOINT ["strata"]
CMD ["serve", "--config", "/etc/strata/config.yaml"]
