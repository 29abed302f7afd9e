# Packaging targets, included by the top-level Makefile (`include packaging/packaging.mk`); they use its GO,
# VERSION, LDFLAGS and BIN. Release binaries differ from `make build`'s: position-independent (PIE, as
# Debian's hardening expects), -trimpath, stripped (-s -w).

RELEASE := $(BIN)/release
NFPM_VERSION := v2.45.2
# An installed nfpm if there is one, else the pinned release through the Go module proxy.
NFPM ?= $(or $(shell command -v nfpm 2>/dev/null),$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION))
# Every file and the image itself carry the time of the last commit, so that images are reproducible.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)

.PHONY: release-binaries deb image packaging-test

release-binaries: ## build PIE, trimmed, stripped mydata-hub and mydata-connector, and the static mydata-probe into bin/release/
	CGO_ENABLED=1 $(GO) build -buildmode=pie -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(RELEASE)/ ./hub/cmd/mydata-hub ./connector/cmd/mydata-connector
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(RELEASE)/ ./packaging/docker/mydata-probe

deb: release-binaries ## build bin/mydata-hub_*.deb and bin/mydata-connector_*.deb (nfpm) and run lintian on them if installed
	rm -f $(BIN)/mydata-hub_*.deb $(BIN)/mydata-connector_*.deb
	HUB_BIN=$(RELEASE)/mydata-hub CONNECTOR_BIN=$(RELEASE)/mydata-connector VERSION=$(VERSION) NFPM="$(NFPM)" \
		SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) packaging/deb/build.sh $(BIN)
	@if command -v lintian >/dev/null; then \
		echo "lintian --pedantic --fail-on warning,pedantic"; \
		lintian --pedantic --fail-on warning,pedantic $(BIN)/mydata-hub_*.deb $(BIN)/mydata-connector_*.deb; \
		echo "lintian: clean"; \
	else \
		echo "lintian is not installed (apt-get install lintian): the packages were not linted"; \
	fi

image: release-binaries ## build the OCI images bin/mydata-hub-image.tar and bin/mydata-connector-image.tar without a Docker engine
	cd packaging/docker/ocibuild && for c in hub connector; do \
		$(GO) run . -component $$c -binary $(RELEASE)/mydata-$$c -probe $(RELEASE)/mydata-probe \
			-config ../$$c.yaml -version $(VERSION) -revision "$(REVISION)" \
			-source-date-epoch $(SOURCE_DATE_EPOCH) -out $(BIN)/mydata-$$c-image.tar || exit 1; \
		echo "wrote $(BIN)/mydata-$$c-image.tar (docker load -i, podman load -i, skopeo copy oci-archive:)"; \
	done

packaging-test: deb image ## test the release .debs and images (install, units, Prometheus rules; see packaging/packaging_test.go)
	MYDATA_PACKAGING_DIR=$(BIN) $(GO) test -count=1 -v -run 'Test' ./packaging/
