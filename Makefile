# podstamp — build, test and measure.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# grpcnotrace leaves out gRPC's golang.org/x/net/trace support (and the
# html/template it brings): podstamp never serves /debug/requests.
TAGS      := grpcnotrace
BIN       := bin/podstamp

.PHONY: all build test test-unit lint e2e e2e-node demo bench chart-test fuzz clean kube-apiserver etcd kube-node image

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/podstamp

## test: everything CI runs — lint, unit tests with -race, chart tests, the end-to-end suite.
test: lint test-unit chart-test e2e e2e-node

# The main module, then the side modules whose code runs outside the binary
# (the end-to-end suite, the one-node cluster test and the benchmark harness).
MODULES   := . e2e bench e2e/node

test-unit:
	$(GO) test -race -count=1 -timeout 15m ./...
	# The proxy suite again as the binary runs by default: the lean gRPC
	# ingress and upstream (--grpc-transport lean --upstream-transport auto).
	PODSTAMP_TEST_GRPC_TRANSPORT=lean PODSTAMP_TEST_UPSTREAM_TRANSPORT=auto $(GO) test -race -count=1 -timeout 10m ./proxy
	cd e2e && $(GO) test -race -count=1 -timeout 10m ./...
	cd bench && $(GO) test -race -count=1 -timeout 10m ./...

# STATICCHECK is pinned in tools/go.mod (a module of its own).
STATICCHECK = $(GO) tool -modfile=$(CURDIR)/tools/go.mod staticcheck

## lint: gofmt, go vet and staticcheck on every module, e2e build tag included.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	for m in $(MODULES); do (cd $$m && $(GO) vet ./... && $(GO) vet -tags e2e ./... && $(STATICCHECK) ./... && $(STATICCHECK) -tags e2e ./...) || exit 1; done

## e2e: real kube-apiserver + etcd, real network namespaces and iptables (needs root), informer.NewAPI against it.
e2e: etcd
	cd e2e && $(GO) test -tags e2e -race -count=1 -timeout 30m -v . 2>&1 | tee ../e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+scenario|\|)' || true
	grep -qE '^(ok|PASS)' e2e.log && ! grep -qE '^(--- FAIL|FAIL)' e2e.log

## e2e-node: a real one-node cluster (kubelet, containerd, CNI bridge+portmap, kube-proxy) in network
## namespaces of its own (needs root, containerd, runc, containernetworking-plugins); the chart
## installed with the Helm SDK; scenarios seed, fix, upgrade and service mode.
e2e-node: kube-node etcd
	@need=""; command -v containerd >/dev/null || need="$$need containerd"; \
	command -v runc >/dev/null || need="$$need runc"; \
	[ -x /usr/lib/cni/portmap ] || need="$$need containernetworking-plugins"; \
	if [ -n "$$need" ]; then echo "installing:$$need"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; fi
	rm -f e2e-node.log
	cd e2e/node && $(GO) vet ./... && $(GO) test -race -count=1 ./image/
	cd e2e/node && $(GO) test -race -count=1 -timeout 25m -v . 2>&1 | tee ../../e2e-node.log | grep -vE '^\s+[EIW][0-9]{4} ' || true
	grep -qE '^ok' e2e-node.log && ! grep -qE '^(--- FAIL|FAIL)' e2e-node.log

## kube-node: build (or reuse) the Kubernetes binaries of e2e-node (cached like kube-apiserver).
kube-node:
	cd e2e/node && $(GO) run ./cmd/kube-binaries

## image: podstamp's container image as a docker-archive tarball (bin/podstamp-image.tar), built
## without a container engine; load it with `ctr -n k8s.io images import` or `docker load`.
image:
	mkdir -p bin && cd e2e/node && $(GO) run ./cmd/podstamp-image -out ../../bin/podstamp-image.tar \
		-ref ghcr.io/podstamp/podstamp:$(VERSION) -version $(VERSION)

## demo: a local API server, a few pods on loopback addresses, podstamp and a sink, side by side.
demo: etcd
	cd e2e && $(GO) run ./demo

## bench: podstamp vs. a raw proxy vs. a Collector with k8sattributes, in one run.
bench: etcd
	cd bench && $(GO) run ./cmd/runner

## kube-apiserver: build the API server the e2e suite, chart tests, demo and bench run (cached).
kube-apiserver:
	cd e2e && $(GO) run ./cmd/kube-apiserver

## etcd: build the etcd server (the e2e/etcd module's pinned 3.6 release) that the e2e suite, chart
## tests, e2e-node, demo and bench run (cached like kube-apiserver; PODSTAMP_ETCD names a prebuilt one).
etcd:
	cd e2e && $(GO) run ./cmd/etcd

chart-test:
	cd charts/test && $(GO) test -count=1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzHTTPHandler -fuzztime 30s ./proxy/
	# Each input opens a connection: minimizing every new one for the
	# default 60 s took most of the time, and found little.
	$(GO) test -run '^$$' -fuzz FuzzLeanServer -fuzztime 60s -fuzzminimizetime 3s ./proxy/
	$(GO) test -run '^$$' -fuzz FuzzStamp -fuzztime 30s ./enrich/
	$(GO) test -run '^$$' -fuzz FuzzUnmarshalPodProto -fuzztime 30s -fuzzminimizetime 2s ./informer/kubetypes/

clean:
	rm -rf bin e2e.log e2e-node.log
