# MyData Federation. `make help` lists the targets; each target's `##` comment is its help line.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
# The version stamped into both binaries: the git description of this tree, or "dev" outside git.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/mydatafed/mydata/pkg/telemetry.Version=$(VERSION)
BIN := $(CURDIR)/bin
# Tools this Makefile installs itself (benchstat) live here, out of git (bin/ is ignored).
TOOLS := $(BIN)/tools

# Fuzzing time per target for `make fuzz`, in go test's -fuzztime form (15s, 1m, 1000x).
FUZZTIME ?= 15s
# `make bench` writes here; the previous run is kept as $(BENCH_OUT:.txt=.old.txt) and compared with.
BENCH_OUT ?= $(BIN)/bench.txt
BENCH_COUNT ?= 6
STATICCHECK_VERSION := v0.8.2
# An installed staticcheck if there is one, else the pinned release through the module proxy.
STATICCHECK ?= $(or $(shell command -v staticcheck 2>/dev/null),$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION))

.PHONY: help build test demo bench lint fuzz clean

help: ## list the targets
	@echo "Usage: make TARGET [VAR=value]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: VERSION=$(VERSION) FUZZTIME=$(FUZZTIME) BENCH_COUNT=$(BENCH_COUNT) BENCH_OUT=$(BENCH_OUT)"

build: ## build mydata-hub and mydata-connector into bin/ (cgo: needs gcc)
	CGO_ENABLED=1 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./hub/cmd/mydata-hub ./connector/cmd/mydata-connector
	@echo "built $(BIN)/mydata-hub and $(BIN)/mydata-connector, version $(VERSION)"

test: ## run the whole suite with the race detector (fuzz seed corpora included; the SPIRE test needs .ci/spire/build.sh)
	CGO_ENABLED=1 $(GO) test -race -timeout 20m ./...

demo: build ## run the whole federation on this machine (hub + 3 connectors, state in .demo/) until Ctrl-C
	DEMO_SKIP_BUILD=1 ./packaging/demo/run.sh

bench: ## run every benchmark BENCH_COUNT times into BENCH_OUT and print benchstat (against the last run if any)
	@mkdir -p $(dir $(BENCH_OUT))
	@if [ -s "$(BENCH_OUT)" ]; then mv -f "$(BENCH_OUT)" "$(BENCH_OUT:.txt=.old.txt)"; fi
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee "$(BENCH_OUT)"
	@if ! grep -q '^Benchmark' "$(BENCH_OUT)"; then echo "no benchmarks in the module yet"; exit 0; fi; \
	benchstat="$$(command -v benchstat || true)"; \
	if [ -z "$$benchstat" ]; then \
		benchstat="$(TOOLS)/benchstat"; \
		if [ ! -x "$$benchstat" ]; then \
			echo "installing benchstat into $(TOOLS)"; \
			GOBIN="$(TOOLS)" $(GO) install golang.org/x/perf/cmd/benchstat@latest; \
		fi; \
	fi; \
	echo; \
	if [ -s "$(BENCH_OUT:.txt=.old.txt)" ]; then \
		"$$benchstat" old="$(BENCH_OUT:.txt=.old.txt)" new="$(BENCH_OUT)"; \
	else \
		"$$benchstat" "$(BENCH_OUT)"; \
	fi

lint: ## gofmt (no file may need formatting), go vet and staticcheck
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi; \
	echo "gofmt: ok"
	$(GO) vet ./...
	$(STATICCHECK) ./...

fuzz: ## run each fuzz target (every func Fuzz* in the module) for FUZZTIME, one after another
	@targets=0; \
	while read -r pkg dir; do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$dir"/*_test.go 2>/dev/null); do \
			targets=$$((targets + 1)); \
			echo "== $$pkg $$name ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done < <($(GO) list -f '{{.ImportPath}} {{.Dir}}' ./...); \
	echo "fuzzed $$targets targets for $(FUZZTIME) each"

clean: ## remove bin/ (binaries, tools, bench results) and the demo's state in .demo/
	rm -rf $(BIN) .demo

# Packaging: release binaries, .deb packages, OCI images and their tests (issue 4).
include packaging/packaging.mk
