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
# Rounds of the product benchmarks (docs/benchmarks.md), and -count of every other benchmark. A round runs the
# 256 MiB transfer over QUIC and over TCP, each next to its baselines (same work, same work with the hop to an
# application, bare copy; 3 copies each), then BENCH_SMALL whole small exchanges on one and on three hub nodes;
# rounds are interleaved, and a product runs between its baselines, so that a noisy machine weighs on both sides
# of a ratio alike. About two minutes a round.
BENCH_COUNT ?= 6
BENCH_SMALL ?= 3000
# Kills of the leader of a three-node hub in the failover benchmark.
BENCH_FAILOVERS ?= 7
# Kills of the DP in the middle of a transfer in the dead-peer benchmark.
BENCH_KILLS ?= 3
STATICCHECK_VERSION := v0.8.2
# An installed staticcheck if there is one, else the pinned release through the module proxy.
STATICCHECK ?= $(or $(shell command -v staticcheck 2>/dev/null),$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION))

.PHONY: help build test demo demo-cluster bench lint fuzz clean

help: ## list the targets
	@echo "Usage: make TARGET [VAR=value]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: VERSION=$(VERSION) FUZZTIME=$(FUZZTIME) BENCH_COUNT=$(BENCH_COUNT) BENCH_OUT=$(BENCH_OUT)"

build: ## build mydata-hub and mydata-connector into bin/ (cgo: needs gcc)
	@# The first cgo build of SQLite (mattn/go-sqlite3) prints nothing for a minute or two: say so first.
	@if [ "$$(CGO_ENABLED=1 $(GO) list -f '{{.Stale}}' github.com/mattn/go-sqlite3 2>/dev/null)" = true ]; then \
		echo "compiling SQLite (cgo) on the first build: about 1–2 minutes with no output; later builds take seconds"; \
	fi
	CGO_ENABLED=1 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./hub/cmd/mydata-hub ./connector/cmd/mydata-connector
	@echo "built $(BIN)/mydata-hub and $(BIN)/mydata-connector, version $(VERSION)"

test: ## run the whole suite with the race detector (fuzz seed corpora included; the SPIRE test needs .ci/spire/build.sh)
	@# -parallel 4: the end-to-end tests mostly wait (processes starting, handshakes, polls); at the default
	@# (GOMAXPROCS, 2 here) the machine sat half idle through make test.
	CGO_ENABLED=1 $(GO) test -race -timeout 30m -parallel 4 ./...

demo: build ## run the whole federation on this machine (hub + 4 connectors, state in .demo/) until Ctrl-C
	DEMO_SKIP_BUILD=1 ./packaging/demo/run.sh

demo-cluster: build ## run the demo with a three-node hub cluster
	DEMO_SKIP_BUILD=1 DEMO_HUB_NODES=3 ./packaging/demo/run.sh

bench: build ## run the benchmarks (product rounds: BENCH_COUNT) into BENCH_OUT; print benchstat and the targets
	@mkdir -p $(dir $(BENCH_OUT))
	@if [ -s "$(BENCH_OUT)" ]; then mv -f "$(BENCH_OUT)" "$(BENCH_OUT:.txt=.old.txt)"; fi
	$(GO) test -c -o $(BIN)/federationtest.test ./pkg/federationtest
	@: > "$(BENCH_OUT)"
	@cd pkg/federationtest; run() { $(BIN)/federationtest.test -test.run '^$$' -test.timeout 15m "$$@" | tee -a "$(BENCH_OUT)"; }; \
	for round in $$(seq 1 $(BENCH_COUNT)); do \
		echo "== product benchmarks, round $$round of $(BENCH_COUNT)"; \
		for b in BareQUICSameWork BulkTransfer BareQUICSameWorkHop BareQUIC TLSTCPSameWork BulkTransferTCP TLSTCPSameWorkHop TLSTCP; do \
			run -test.bench "^Benchmark$$b\$$" -test.benchtime 3x; \
		done; \
		run -test.bench '^BenchmarkSmallExchanges$$' -test.benchtime $(BENCH_SMALL)x; \
		run -test.bench '^BenchmarkSmallExchangesCluster$$' -test.benchtime $(BENCH_SMALL)x; \
	done; \
	echo "== hub failover ($(BENCH_FAILOVERS) kills of the leader)"; \
	run -test.bench '^BenchmarkFailover$$' -test.benchtime $(BENCH_FAILOVERS)x; \
	echo "== idle connector"; \
	run -test.bench '^BenchmarkIdleConnector$$' -test.benchtime 1x; \
	echo "== SP memory over a 1 GiB exchange"; \
	run -test.bench '^BenchmarkLargeExchangeRSS$$' -test.benchtime 1x; \
	echo "== dead DP ($(BENCH_KILLS) kills mid-transfer)"; \
	run -test.bench '^BenchmarkDeadPeer$$' -test.benchtime $(BENCH_KILLS)x
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) $$($(GO) list ./... | grep -v '/pkg/federationtest$$') | tee -a "$(BENCH_OUT)"
	@benchstat="$$(command -v benchstat || true)"; \
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
	@size() { stat -c %s "$$1"; }; stripped() { if command -v strip >/dev/null; then strip -o "$(BIN)/.stripped" "$$1" && size "$(BIN)/.stripped" && rm -f "$(BIN)/.stripped"; else echo 0; fi; }; \
	echo; awk -v hub="$$(size $(BIN)/mydata-hub)" -v conn="$$(size $(BIN)/mydata-connector)" \
		-v hub_stripped="$$(stripped $(BIN)/mydata-hub)" -v conn_stripped="$$(stripped $(BIN)/mydata-connector)" \
		-v out="$(BENCH_OUT)" "$$BENCH_SUMMARY" "$(BENCH_OUT)"

# The summary `make bench` ends with: medians over the rounds of each product figure, the ratios (taken per
# round, since both sides of a round ran minutes apart at most) and each target from docs/benchmarks.md.
define BENCH_SUMMARY
function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function med(name, unit,    i, a) {
	if (!((name, unit) in count)) return -1
	for (i = 1; i <= count[name, unit]; i++) a[i] = val[name, unit, i]
	return median(a, count[name, unit])
}
function ratio(num, den) { return ratioOf(num, den, "MB/s") }
function ratioOf(num, den, unit,    i, n, a) {
	n = count[num, unit] < count[den, unit] ? count[num, unit] : count[den, unit]
	if (n == 0) return -1
	for (i = 1; i <= n; i++) a[i] = val[num, unit, i] / val[den, unit, i]
	return median(a, n)
}
# The CPU both ends (or DP, SP and application) used per operation in round i, and the median over the
# rounds of the baseline's CPU over the product's: on a shared machine the steadier measure of what the
# product costs per byte beyond the same work.
function cpuOf(name, i, units,    u, n, k, s) {
	n = split(units != "" ? units : cpuUnits[name], u, " ")
	for (k = 1; k <= n; k++) {
		if (count[name, u[k]] < i) return -1
		s += val[name, u[k], i]
	}
	return s
}
# numUnits, if given, counts only those processes of num (the connectors without the application).
function cpuRatio(num, den, numUnits,    i, n, a, x, y) {
	n = count[num, "MB/s"] < count[den, "MB/s"] ? count[num, "MB/s"] : count[den, "MB/s"]
	if (n == 0) return -1
	for (i = 1; i <= n; i++) {
		x = cpuOf(num, i, numUnits); y = cpuOf(den, i)
		if (x <= 0 || y < 0) return -1
		a[i] = y / x
	}
	return median(a, n)
}
function verdict(ok) { return ok ? "met" : "NOT MET" }
function show(label, v, fmt, target) {
	if (v < 0) { printf "  %-38s not measured\n", label; return }
	printf "  %-38s " fmt "%s\n", label, v, target
}
/^Benchmark/ {
	name = $$1; sub(/-[0-9]+$$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 3; i < NF; i += 2) { k = count[name, $$(i+1)]++; val[name, $$(i+1), k+1] = $$i }
}
BEGIN {
	cpuUnits["BulkTransfer"] = cpuUnits["BulkTransferTCP"] = "dp-cpu-ms/op sp-cpu-ms/op app-cpu-ms/op"
	cpuUnits["BareQUICSameWork"] = cpuUnits["TLSTCPSameWork"] = "server-cpu-ms/op client-cpu-ms/op"
	cpuUnits["BareQUICSameWorkHop"] = cpuUnits["TLSTCPSameWorkHop"] = "server-cpu-ms/op client-cpu-ms/op app-cpu-ms/op"
}
END {
	bulk = med("BulkTransfer", "MB/s"); quic = med("BareQUIC", "MB/s"); tls = med("TLSTCP", "MB/s")
	rq = ratio("BulkTransfer", "BareQUIC"); rt = ratio("BulkTransfer", "TLSTCP")
	qw = med("BareQUICSameWork", "MB/s"); tw = med("TLSTCPSameWork", "MB/s")
	rqw = ratio("BulkTransfer", "BareQUICSameWork"); rtw = ratio("BulkTransfer", "TLSTCPSameWork")
	qh = med("BareQUICSameWorkHop", "MB/s"); th = med("TLSTCPSameWorkHop", "MB/s")
	lqh = ratio("BareQUICSameWorkHop", "BareQUICSameWork"); lth = ratio("TLSTCPSameWorkHop", "TLSTCPSameWork")
	rqh = ratio("BulkTransfer", "BareQUICSameWorkHop"); rth = ratio("BulkTransferTCP", "TLSTCPSameWorkHop")
	btcp = med("BulkTransferTCP", "MB/s"); rtcp = ratio("BulkTransferTCP", "TLSTCPSameWork"); rtcpb = ratio("BulkTransferTCP", "TLSTCP")
	lx = med("LargeExchangeRSS", "sp-peak-RSS-MiB"); dk = med("DeadPeer", "kill-to-failed-ms")
	xs = med("SmallExchanges", "exchanges/s"); p50 = med("SmallExchanges", "p50-ms"); p99 = med("SmallExchanges", "p99-ms")
	rss = med("IdleConnector", "RSS-MiB")
	cxs = med("SmallExchangesCluster", "exchanges/s"); cp99 = med("SmallExchangesCluster", "p99-ms"); cr = ratioOf("SmallExchangesCluster", "SmallExchanges", "exchanges/s")
	fo = med("Failover", "failover-ms"); fomax = med("Failover", "failover-max-ms")
	printf "Summary of %s (medians of %d rounds; the targets are in docs/benchmarks.md)\n", out, count["BulkTransfer", "MB/s"]
	show("bulk 256 MiB DP->SP, product", bulk, "%7.1f MB/s", sprintf("   (CPU per transfer: DP %.2f s, SP %.2f s, SP app %.2f s)", med("BulkTransfer", "dp-cpu-ms/op")/1000, med("BulkTransfer", "sp-cpu-ms/op")/1000, med("BulkTransfer", "app-cpu-ms/op")/1000))
	show("bare quic-go, one stream", quic, "%7.1f MB/s", sprintf("   (CPU per copy: %.2f s)", (med("BareQUIC", "server-cpu-ms/op") + med("BareQUIC", "client-cpu-ms/op"))/1000))
	show("TLS 1.3 over TCP", tls, "%7.1f MB/s", sprintf("   (CPU per copy: server %.2f s, client %.2f s)", med("TLSTCP", "server-cpu-ms/op")/1000, med("TLSTCP", "client-cpu-ms/op")/1000))
	show("bare quic-go + same work", qw, "%7.1f MB/s", sprintf("   (CPU per copy: server %.2f s, client %.2f s; SHA-256 and AES-256-GCM both ends)", med("BareQUICSameWork", "server-cpu-ms/op")/1000, med("BareQUICSameWork", "client-cpu-ms/op")/1000))
	show("TLS over TCP + same work", tw, "%7.1f MB/s", sprintf("   (CPU per copy: server %.2f s, client %.2f s)", med("TLSTCPSameWork", "server-cpu-ms/op")/1000, med("TLSTCPSameWork", "client-cpu-ms/op")/1000))
	show("quic-go same work + hop to an app", qh, "%7.1f MB/s", sprintf("   (CPU per copy: server %.2f s, middle %.2f s, app %.2f s; the product's HTTP hop, nothing else)", med("BareQUICSameWorkHop", "server-cpu-ms/op")/1000, med("BareQUICSameWorkHop", "client-cpu-ms/op")/1000, med("BareQUICSameWorkHop", "app-cpu-ms/op")/1000))
	show("TLS same work + hop to an app", th, "%7.1f MB/s", sprintf("   (CPU per copy: server %.2f s, middle %.2f s, app %.2f s)", med("TLSTCPSameWorkHop", "server-cpu-ms/op")/1000, med("TLSTCPSameWorkHop", "client-cpu-ms/op")/1000, med("TLSTCPSameWorkHop", "app-cpu-ms/op")/1000))
	show("product / bare quic-go", rq, "%7.2f", rq < 0 ? "" : "        target >= 0.80: " verdict(rq >= 0.8))
	show("product / TLS over TCP", rt, "%7.2f", "")
	show("product / quic-go same work", rqw, "%7.3f", rqw < 0 ? "" : "        target >= 0.90: " verdict(rqw >= 0.9))
	show("  same work / product, CPU per byte", cpuRatio("BulkTransfer", "BareQUICSameWork"), "%7.3f", sprintf("        (1 = no CPU beyond the same work; the connectors alone, without the application: %.3f)", cpuRatio("BulkTransfer", "BareQUICSameWork", "dp-cpu-ms/op sp-cpu-ms/op")))
	show("  limit: same work + hop / same work", lqh, "%7.3f", lqh < 0 ? "" : "        (the most any product with the streaming hop can reach here)")
	show("  product / same work + hop", rqh, "%7.3f", rqh < 0 ? "" : sprintf("        (the product's own overhead; CPU per byte %.3f)", cpuRatio("BulkTransfer", "BareQUICSameWorkHop")))
	show("product (QUIC) / TLS same work", rtw, "%7.2f", "")
	show("bulk 256 MiB DP->SP, product over TCP", btcp, "%7.1f MB/s", sprintf("   (QUIC off at the SP; CPU per transfer: DP %.2f s, SP %.2f s, SP app %.2f s)", med("BulkTransferTCP", "dp-cpu-ms/op")/1000, med("BulkTransferTCP", "sp-cpu-ms/op")/1000, med("BulkTransferTCP", "app-cpu-ms/op")/1000))
	show("product over TCP / TLS over TCP", rtcpb, "%7.2f", "")
	show("product over TCP / TLS same work", rtcp, "%7.3f", rtcp < 0 ? "" : "        target >= 0.90: " verdict(rtcp >= 0.9))
	show("  same work / product, CPU per byte", cpuRatio("BulkTransferTCP", "TLSTCPSameWork"), "%7.3f", sprintf("        (the connectors alone: %.3f)", cpuRatio("BulkTransferTCP", "TLSTCPSameWork", "dp-cpu-ms/op sp-cpu-ms/op")))
	show("  limit: same work + hop / same work", lth, "%7.3f", "")
	show("  product / same work + hop", rth, "%7.3f", rth < 0 ? "" : sprintf("        (CPU per byte %.3f)", cpuRatio("BulkTransferTCP", "TLSTCPSameWorkHop")))
	show("small exchanges, 32 clients", xs, "%7.1f /s", xs < 0 ? "" : sprintf("   target >= 500/s: %s   (CPU per exchange: hub %.2f, DP %.2f, SP %.2f, clients %.2f ms)", verdict(xs >= 500), med("SmallExchanges", "hub-cpu-ms/op"), med("SmallExchanges", "dp-cpu-ms/op"), med("SmallExchanges", "sp-cpu-ms/op"), med("SmallExchanges", "app-cpu-ms/op")))
	show("  latency p50", p50, "%7.1f ms", "")
	show("  latency p99", p99, "%7.1f ms", p99 < 0 ? "" : "     target < 100 ms: " verdict(p99 < 100))
	show("small exchanges, 3-node hub", cxs, "%7.1f /s", cxs < 0 ? "" : sprintf("   (CPU per exchange: hubs %.2f = %.2f + %.2f + %.2f, DP %.2f, SP %.2f ms)", med("SmallExchangesCluster", "hub-cpu-ms/op"), med("SmallExchangesCluster", "hub1-cpu-ms/op"), med("SmallExchangesCluster", "hub2-cpu-ms/op"), med("SmallExchangesCluster", "hub3-cpu-ms/op"), med("SmallExchangesCluster", "dp-cpu-ms/op"), med("SmallExchangesCluster", "sp-cpu-ms/op")))
	show("  3-node / 1-node", cr, "%7.2f", cr < 0 ? "" : "        target >= 0.60: " verdict(cr >= 0.6))
	show("  latency p99, 3-node", cp99, "%7.1f ms", cp99 < 0 ? "" : "     target < 150 ms: " verdict(cp99 < 150))
	show("failover: kill leader -> next grant", fo, "%7.0f ms", fo < 0 ? "" : sprintf("     (median of %d kills; slowest %.0f ms; raft heartbeat and election timeouts 1 s)", count["Failover", "failover-ms"] ? $(BENCH_FAILOVERS) : 0, fomax))
	show("idle connector RSS (larger of DP, SP)", rss, "%7.1f MiB", rss < 0 ? "" : "    target < 40 MiB: " verdict(rss < 40))
	show("SP peak RSS, 1 GiB POST /v1/exchanges", lx, "%7.1f MiB", lx < 0 ? "" : sprintf("    target < 100 MiB: %s   (%.1f MB/s; CPU: DP %.2f s, SP %.2f s, app %.2f s)", verdict(lx < 100), med("LargeExchangeRSS", "MB/s"), med("LargeExchangeRSS", "dp-cpu-ms/op")/1000, med("LargeExchangeRSS", "sp-cpu-ms/op")/1000, med("LargeExchangeRSS", "app-cpu-ms/op")/1000))
	show("SIGKILL of DP -> SP reports failed", dk, "%7.0f ms", dk < 0 ? "" : sprintf("     target < 15000 ms: %s   (median of %d kills; slowest %.0f ms; quic.idle_timeout 10 s)", verdict(dk < 15000), count["DeadPeer", "kill-to-failed-ms"] ? $(BENCH_KILLS) : 0, med("DeadPeer", "kill-to-failed-max-ms")))
	show("bin/mydata-hub", hub / 1048576, "%7.1f MiB", hub_stripped > 0 ? sprintf("    (%.1f MiB stripped)", hub_stripped / 1048576) : "")
	show("bin/mydata-connector", conn / 1048576, "%7.1f MiB", conn_stripped > 0 ? sprintf("    (%.1f MiB stripped)", conn_stripped / 1048576) : "")
}
endef
export BENCH_SUMMARY

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
