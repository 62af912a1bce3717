# One image with both binaries: `food-delivery serve <service>` (what the operator deploys) and
# `food-delivery-operator run` (what the Helm chart runs). Distroless, non-root (uid 65532), no shell.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p food-delivery -p food-delivery-operator \
    && cp target/release/food-delivery target/release/food-delivery-operator /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/food-delivery /usr/local/bin/food-delivery
COPY --from=build /usr/local/bin/food-delivery-operator /usr/local/bin/food-delivery-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/food-delivery"]
CMD ["up", "--host", "0.0.0.0", "--data-dir", "/tmp/food-delivery-data"]
