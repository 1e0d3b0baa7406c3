# syntax=docker/dockerfile:1
#
# echod in a small image: a static binary on distroless, run as non-root.
#
#   docker build -t echod --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run --rm -p 7007:7007 echod                     # serves 0.0.0.0:7007
#   docker run --rm -p 8000:8000 echod --listen :8000      # serves :8000 only
#
# The default --listen is the CMD, so any arguments given to `docker run`
# replace it rather than add a second listener. The build context has no
# .git (.dockerignore), so Go cannot record a VCS revision: VERSION is
# stamped in with the linker instead, and `echod --version` and the startup
# line report it ("(devel)" when the build arg is not given).
#
# Docker's default seccomp profile denies io_uring (moby #47532), so in a
# default container echod serves on epoll and its startup line says why.
# To let it use io_uring, run it with the profile in contrib/:
#
#   docker run --rm -p 7007:7007 \
#     --security-opt seccomp=contrib/seccomp-io_uring.json echod
#
# On `docker stop`, echod drains for up to --shutdown-timeout (10s by
# default), and Docker kills it after its own 10s: give the container more
# (`docker run --stop-timeout 15`, or stop_grace_period in compose) or
# echod less, so that the drain ends before the kill.
#
# The HEALTHCHECK is echod itself: `echod --probe ADDR` sends 16 bytes and
# exits 0 only if they come back (distroless has no shell, nc or curl to
# probe with). It probes the default address; a container run with another
# --listen must probe that one instead, in exec form since there is no
# shell (compose: `healthcheck: test: ["CMD", "/usr/local/bin/echod",
# "--probe", "127.0.0.1:8000"]`), or run with --no-healthcheck. /healthz,
# served with --metrics-addr, is there for orchestrators that probe HTTP.

FROM golang:1.26 AS build
ARG VERSION=
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: a static binary that needs no libc in the final image.
# -trimpath: no build-machine paths in it; -s -w: no symbol tables; -X:
# the version (integration/dockerfile_test.go runs this very line outside
# Docker and checks the stamp).
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/oneshot-io/oneshot/internal/version.Stamped=${VERSION}" -o /out/echod ./cmd/echod

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/echod /usr/local/bin/echod
# nonroot is uid 65532 in distroless; named numerically so that Kubernetes'
# runAsNonRoot can check it.
USER 65532:65532
EXPOSE 7007
# The log goes to stderr as JSON for `docker logs`. Inside a container the
# published port must reach echod, so by default it listens on every
# interface; that default is the CMD, which arguments to `docker run`
# replace (--listen accumulates, so in the ENTRYPOINT it could not be
# overridden, only added to).
ENTRYPOINT ["/usr/local/bin/echod", "--log-format", "json"]
CMD ["--listen", "0.0.0.0:7007"]
# A probe takes at most 2s (--probe-timeout), well inside --timeout. With
# --start-period=5s, Docker 25 and later run the first check about 5s
# after the start; older engines wait one --interval (30s). A bad probe
# command line exits 2, which Docker also counts as unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/echod", "--probe", "127.0.0.1:7007"]
