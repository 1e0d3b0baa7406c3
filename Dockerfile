# syntax=docker/dockerfile:1
#
# echod in a small image: a static binary on distroless, run as non-root.
#
#   docker build -t echod .
#   docker run --rm -p 7007:7007 echod
#
# Docker's default seccomp profile denies io_uring (moby #47532), so in a
# default container echod serves on epoll and its startup line says why.
# To let it use io_uring, run it with the profile in contrib/:
#
#   docker run --rm -p 7007:7007 \
#     --security-opt seccomp=contrib/seccomp-io_uring.json echod

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: a static binary that needs no libc in the final image.
# -trimpath: no build-machine paths in it; -s -w: no symbol tables.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/echod ./cmd/echod

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/echod /usr/local/bin/echod
# nonroot is uid 65532 in distroless; named numerically so that Kubernetes'
# runAsNonRoot can check it.
USER 65532:65532
EXPOSE 7007
# Inside a container the published port must reach echod, so it listens on
# every interface; the log goes to stderr as JSON for `docker logs`.
ENTRYPOINT ["/usr/local/bin/echod", "--listen", "0.0.0.0:7007", "--log-format", "json"]
