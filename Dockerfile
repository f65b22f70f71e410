# Multi-stage build of bin/xmirror from the committed BPF bindings (no clang needed).
# Run it privileged with the host's network for `source` and `lb`:
#   docker run --rm --privileged --network host -v /sys/fs/bpf:/sys/fs/bpf \
#     -v $PWD/xmirror.yaml:/etc/xmirror.yaml xmirror lb --config /etc/xmirror.yaml
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/xmirror ./cmd/xmirror

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/xmirror /usr/local/bin/xmirror
COPY config/examples /etc/xmirror/examples
ENTRYPOINT ["/usr/local/bin/xmirror"]
CMD ["--help"]
