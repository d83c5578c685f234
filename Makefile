# podstamp — build, test and measure.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# grpcnotrace leaves out gRPC's golang.org/x/net/trace support (and the
# html/template it brings): podstamp never serves /debug/requests.
TAGS      := grpcnotrace
BIN       := bin/podstamp

.PHONY: all build test test-unit lint e2e demo bench chart-test fuzz clean kube-apiserver

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/podstamp

## test: everything CI runs — lint, unit tests with -race, chart tests, the end-to-end suite.
test: lint test-unit chart-test e2e

# The main module, then the side modules whose code runs outside the binary
# (the end-to-end suite's helpers and the benchmark harness).
MODULES   := . e2e bench

test-unit:
	$(GO) test -race -count=1 -timeout 15m ./...
	cd e2e && $(GO) test -race -count=1 -timeout 10m ./...
	cd bench && $(GO) test -race -count=1 -timeout 10m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	for m in $(MODULES); do (cd $$m && $(GO) vet ./... && $(GO) vet -tags e2e ./...) || exit 1; done

## e2e: real kube-apiserver + etcd, real network namespaces and iptables (needs root), informer.NewAPI against it.
e2e:
	cd e2e && $(GO) test -tags e2e -race -count=1 -timeout 30m -v . 2>&1 | tee ../e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+scenario|\|)' || true; \
	grep -qE '^(ok|PASS)' e2e.log && ! grep -qE '^(--- FAIL|FAIL)' e2e.log

## demo: a local API server, a few pods on loopback addresses, podstamp and a sink, side by side.
demo:
	cd e2e && $(GO) run ./demo

## bench: podstamp vs. a raw proxy vs. a Collector with k8sattributes, in one run.
bench:
	cd bench && $(GO) run ./cmd/runner

## kube-apiserver: build the API server the e2e suite, chart tests, demo and bench run (cached).
kube-apiserver:
	cd e2e && $(GO) run ./cmd/kube-apiserver

chart-test:
	cd charts/test && $(GO) test -count=1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzHTTPHandler -fuzztime 30s ./proxy/
	$(GO) test -run '^$$' -fuzz FuzzStamp -fuzztime 30s ./enrich/

clean:
	rm -rf bin e2e.log
