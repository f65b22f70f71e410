# SPDX-License-Identifier: Apache-2.0
# xmirror build. `make help` lists the targets.
SHELL := /bin/bash

# Pinned BPF toolchain: Debian's clang-19, headers from libbpf-dev and linux-libc-dev.
CLANG   ?= clang-19
STRIP   ?= llvm-strip-19
ARCH_INCLUDE ?= /usr/include/$(shell uname -m)-linux-gnu
export BPF2GO_CC     := $(CLANG)
export BPF2GO_STRIP  := $(STRIP)
export BPF2GO_CFLAGS := -O2 -g -Wall -Werror -I$(ARCH_INCLUDE)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Debian packages the build, the tests, the demo and the benchmarks need.
DEB_PACKAGES := clang-19 llvm-19 libbpf-dev linux-libc-dev bpftool iproute2 iputils-ping ethtool nftables bird2 \
	procps util-linux mount \
	tcpdump tshark iperf3 nginx-light libnginx-mod-stream netcat-openbsd ca-certificates git make \
	systemd lintian prometheus

GO ?= go

.PHONY: help deps build generate verify-generate test test-unit lint demo bench bench-quick deb release docker clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## install the Debian packages and Go modules (idempotent; needs root)
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) mod download

build: ## build bin/xmirror from the committed BPF bindings (no clang needed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/xmirror ./cmd/xmirror

generate: ## rebuild every BPF object and its Go bindings with the pinned clang
	$(GO) generate ./...

verify-generate: generate ## fail when the committed BPF bindings differ from a fresh build
	@git diff --exit-code --stat -- '*_bpfel.go' '*_bpfel.o' '*_bpfel_test.go' '*_bpfel_test.o' || \
		{ echo "committed BPF bindings are stale: run 'make generate' and commit"; exit 1; }

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Tests run one package at a time (-p 1): the zero-loss integration tests must not
# share the two cores with another package's benchmark smoke run.
test: deps verify-generate lint build ## set up, then run every test (as root: BPF, namespaces, e2e, bench smoke run)
	$(GO) test -count=1 -p 1 -timeout 40m ./...

test-unit: ## run the tests without setup
	$(GO) test -count=1 ./...

demo: deps build ## set up and run the seed scenario on this machine (needs root)
	./bin/xmirror demo --out ./demo-pcap

bench-quick: build ## the benchmark smoke run (under two minutes; needs root)
	./bin/xmirror bench --quick --out $${TMPDIR:-/tmp}/xmirror-bench-smoke

bench: build ## the full benchmark run (about ten minutes; needs root), report in ./bench-report
	./bin/xmirror bench --out ./bench-report

deb: build ## build dist/xmirror_DEBVERSION_ARCH.deb (DEBVERSION: 1.2.3-1, or 0~git+COMMITTIME.COMMIT-1) (binary, units, config, examples, man page, completion)
	deploy/deb/build.sh bin/xmirror $(VERSION) dist

# Static binaries for each architecture, named with the version, and their sha256 sums.
RELEASE_ARCHES ?= amd64 arm64
release: ## build dist/xmirror-VERSION-linux-ARCH for $(RELEASE_ARCHES) and dist/SHA256SUMS
	@mkdir -p dist
	@for a in $(RELEASE_ARCHES); do \
		echo "building dist/xmirror-$(VERSION)-linux-$$a"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/xmirror-$(VERSION)-linux-$$a ./cmd/xmirror || exit 1; \
	done
	cd dist && sha256sum xmirror-$(VERSION)-linux-* > SHA256SUMS && cat SHA256SUMS

docker: ## build the container image with the version and commit (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t xmirror:$(VERSION) .

clean: ## remove build output
	rm -rf bin dist
