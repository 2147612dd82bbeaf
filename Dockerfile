# keygate container image: a static binary on `scratch`, run as the
# unprivileged user 65532 with its state in the volume /var/lib/keygate.
#
#   docker build --build-arg VERSION=v1.0.0 --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg DATE=$(git log -1 --format=%cI) -t keygate .
#   docker run -p 8080:8080 -v keygate:/var/lib/keygate -e KEYGATE_UPSTREAM=api:9080 keygate
#
# The root filesystem is laid out by scripts/rootfs, which packaging/test-rootfs
# runs without a container engine to test the same tree.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
ARG COMMIT=
ARG DATE=
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X github.com/keygate/keygate/internal/version.Version=${VERSION} -X github.com/keygate/keygate/internal/version.Commit=${COMMIT} -X github.com/keygate/keygate/internal/version.Date=${DATE}" \
      -o /out/keygate ./cmd/keygate \
 && scripts/rootfs /rootfs /out/keygate

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /rootfs/var/lib/keygate /var/lib/keygate
# Caddy's admin endpoint, with keygate's trusted routes: a 0600 Unix socket
# here, not a TCP port other containers of the pod could reach.
COPY --from=build --chown=65532:65532 /rootfs/run/keygate /run/keygate
ENV HOME=/var/lib/keygate XDG_DATA_HOME=/var/lib/keygate XDG_CONFIG_HOME=/var/lib/keygate/config \
    KEYGATE_LISTEN=:8080 KEYGATE_ADMIN_API=127.0.0.1:8081 KEYGATE_ADMIN=unix//run/keygate/admin.sock|0600
USER 65532:65532
VOLUME /var/lib/keygate
EXPOSE 8080
ENTRYPOINT ["/usr/bin/keygate"]
CMD ["run", "--config", "/etc/keygate/Caddyfile", "--adapter", "caddyfile"]
