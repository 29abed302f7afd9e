#!/usr/bin/env bash
# Builds SPIRE's spire-server and spire-agent binaries, at the version pinned
# in this directory's go.mod, into "${SPIRE_BIN:-$HOME/.cache/mydata-spire/bin}".
# pkg/federationtest looks for them there (see SPIREBinaries).
#
# `go install github.com/spiffe/spire/cmd/...@vX` does not work through the
# module proxy, so this directory is a small tools module that requires
# github.com/spiffe/spire, with SPIRE's own go.sum merged in; the binaries are
# built from it with plain `go build`, so the dependency versions are SPIRE's.
#
# The build is skipped when both binaries already exist and report the pinned
# version. It takes several minutes from a cold build cache; cgo (a C
# compiler) is needed for the sqlite3 datastore.
set -euo pipefail

SPIRE_VERSION=1.13.3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${SPIRE_BIN:-$HOME/.cache/mydata-spire/bin}"

# reports_version BINARY: true when BINARY exists and reports SPIRE_VERSION.
reports_version() {
	[[ -x "$1" ]] || return 1
	local v
	v="$("$1" --version 2>&1 || true)"
	[[ "$v" == "$SPIRE_VERSION" ]]
}

if reports_version "$bin/spire-server" && reports_version "$bin/spire-agent"; then
	echo "spire-server and spire-agent $SPIRE_VERSION already in $bin"
	exit 0
fi

if ! grep -q "github.com/spiffe/spire v$SPIRE_VERSION\$" "$here/go.mod"; then
	echo "build.sh: $here/go.mod does not require github.com/spiffe/spire v$SPIRE_VERSION" >&2
	exit 1
fi

export CGO_ENABLED=1 # github.com/mattn/go-sqlite3 (sqlite3 datastore)

mkdir -p "$bin"
ldflags="-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=$SPIRE_VERSION"

cd "$here"
for cmd in spire-server spire-agent; do
	echo "building $cmd $SPIRE_VERSION into $bin"
	start=$SECONDS
	# Build to a temporary name and rename, so an interrupted build never
	# leaves a half-written binary where the tests look.
	go build -mod=readonly -buildvcs=false -trimpath -ldflags "$ldflags" -o "$bin/.$cmd.tmp" "github.com/spiffe/spire/cmd/$cmd"
	mv -f "$bin/.$cmd.tmp" "$bin/$cmd"
	echo "built $cmd in $((SECONDS - start))s"
done

for cmd in spire-server spire-agent; do
	if ! reports_version "$bin/$cmd"; then
		echo "build.sh: $bin/$cmd reports version '$("$bin/$cmd" --version 2>&1 || true)', want $SPIRE_VERSION" >&2
		exit 1
	fi
done
echo "spire-server and spire-agent $SPIRE_VERSION are in $bin"
