# SPDX-License-Identifier: Apache-2.0
# Multi-stage build of xmirror from the committed BPF bindings (no clang needed).
# `make docker` passes VERSION and COMMIT. Run with the host's network and only the
# capabilities each part needs (never in privileged mode):
#   lb:      docker run -d --network host --cap-drop ALL --cap-add BPF --cap-add NET_ADMIN --cap-add PERFMON \
#              --user 0 -v /sys/fs/bpf:/sys/fs/bpf -v /etc/xmirror:/etc/xmirror:ro xmirror:VERSION lb
#   source:  as lb, plus --cap-add NET_RAW; command: source
#   collect: docker run -d --network host --cap-drop ALL -v /var/lib/xmirror/pcap:/var/lib/xmirror/pcap \
#              -v /etc/xmirror:/etc/xmirror:ro xmirror:VERSION collect
# The image runs as the distroless nonroot user (65532) by default, enough for
# the socket collector; lb and source need root's capabilities (--user 0, with
# everything but the listed capabilities dropped). See docs/deploy.md.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/xmirror ./cmd/xmirror \
 && mkdir -p /out/pcap

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="xmirror" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0 AND (MIT OR GPL-2.0-only)"
COPY --from=build /out/xmirror /usr/bin/xmirror
COPY deploy/xmirror.yaml /etc/xmirror/xmirror.yaml
COPY config/examples /usr/share/doc/xmirror/examples
COPY --from=build --chown=65532:65532 /out/pcap /var/lib/xmirror/pcap
VOLUME /var/lib/xmirror/pcap
EXPOSE 4789/udp 9091/tcp
ENTRYPOINT ["/usr/bin/xmirror"]
CMD ["--help"]
