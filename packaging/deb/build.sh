#!/usr/bin/env bash
# Builds the mydata-hub and mydata-connector Debian packages with nfpm.
#
#   packaging/deb/build.sh OUTDIR
#
# Environment:
#   HUB_BIN, CONNECTOR_BIN  the binaries to package (required; `make deb` builds release binaries)
#   VERSION                 the version they carry, as `git describe` prints it (default: dev); the Debian
#                           version is derived from it (see deb_version)
#   NFPM                    the nfpm command (default: the pinned release through the Go module proxy)
#
# It fills a staging directory with exactly the files the packages hold (binaries stripped, man pages,
# changelogs and docs gzipped with -9n, maintainer scripts made from one template per kind), runs nfpm there
# and prints the paths of the two .deb files.
set -euo pipefail

NFPM_VERSION=v2.45.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUTDIR}"
: "${HUB_BIN:?HUB_BIN: the mydata-hub binary to package}"
: "${CONNECTOR_BIN:?CONNECTOR_BIN: the mydata-connector binary to package}"
VERSION="${VERSION:-dev}"
read -r -a nfpm <<<"${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION}"

# deb_version turns a `git describe --tags --always --dirty` string into a Debian version of a native
# package (no hyphen): v1.2.3 -> 1.2.3, v1.2.3-4-gabc -> 1.2.3+git4.gabc, abc1234 -> 0.0~git.abc1234,
# and a -dirty suffix becomes +dirty (or .dirty).
deb_version() {
	local v="$1" dirty=""
	if [[ "$v" == *-dirty ]]; then
		dirty=dirty
		v="${v%-dirty}"
	fi
	if [[ "$v" =~ ^v?([0-9][0-9A-Za-z.~+]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		v="${BASH_REMATCH[1]}+git${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}${dirty:+.$dirty}"
	elif [[ "$v" =~ ^v?([0-9][0-9A-Za-z.~+]*)$ ]]; then
		v="${BASH_REMATCH[1]}${dirty:++$dirty}"
	elif [[ "$v" =~ ^[0-9a-f]{4,40}$ ]]; then
		v="0.0~git.$v${dirty:+.$dirty}"
	else
		v="0.0~${v//[^0-9A-Za-z.]/.}${dirty:+.$dirty}"
	fi
	echo "$v"
}

deb_v="$(deb_version "$VERSION")"
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}"
date_r="$(LC_ALL=C date -u -R -d "@$epoch")"

stage="$(mktemp -d "${TMPDIR:-/tmp}/mydata-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"

gz() { gzip -9n -c "$1" >"$2"; }

for component in hub connector; do
	pkg="mydata-$component"
	bin_var="HUB_BIN"
	[[ $component == connector ]] && bin_var="CONNECTOR_BIN"
	# Debian ships stripped binaries (lintian: unstripped-binary-or-object); `make deb` builds them with -s -w
	# already, and a test may hand in a debug build.
	strip --strip-unneeded --remove-section=.comment -o "$stage/$pkg" "${!bin_var}"
	chmod 0755 "$stage/$pkg"
	cp "$root/conf/$component.yaml" "$stage/$component.yaml"
	cp "$here/$pkg.service" "$stage/$pkg.service"
	gz "$here/man/$pkg.1" "$stage/$pkg.1.gz"
	sed -e "s/@PACKAGE@/$pkg/; s/@VERSION@/$deb_v/; s/@GITVERSION@/$VERSION/; s/@DATE@/$date_r/" \
		"$here/changelog.in" >"$stage/changelog-$pkg"
	gz "$stage/changelog-$pkg" "$stage/changelog-$pkg.gz"
	for script in postinst prerm postrm; do
		sed -e "s/@COMPONENT@/$component/" "$here/scripts/$script" >"$stage/$script-$component"
		chmod 0755 "$stage/$script-$component"
	done
done
cp "$here/copyright" "$stage/copyright"
gz "$root/docs/operations.md" "$stage/operations.md.gz"
gz "$root/docs/operator-guide.md" "$stage/operator-guide.md.gz"
gz "$root/docs/cluster.md" "$stage/cluster.md.gz"
gz "$root/docs/architecture.md" "$stage/architecture.md.gz"

for component in hub connector; do
	(cd "$stage" && MYDATA_DEB_VERSION="$deb_v" "${nfpm[@]}" package --config "$here/mydata-$component.nfpm.yaml" --packager deb --target "$stage/") >&2
	mv "$stage/mydata-${component}_${deb_v}_amd64.deb" "$out/"
	echo "$out/mydata-${component}_${deb_v}_amd64.deb"
done
