#!/usr/bin/env bash
# Builds dist/relayq_VERSION_amd64.deb from packaging/nfpm.yaml.
#
# VERSION: $VERSION if set; else the tag at HEAD (v1.2.3 → 1.2.3); else
# packaging/VERSION plus "~git<commit time>.<commit>", which sorts below
# the release and rises with every commit, so apt upgrades build to build.
# The binary says it (relayq --version), as do the man pages and the
# package's metadata.
#
# nfpm runs with `go run` at a pinned version, so its dependencies stay out
# of relayq's go.mod. The man pages and the bash completion come from the
# binary itself (relayq help --man SECTION, --completion bash).
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.48.0

if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --exact-match 2>/dev/null); then
		VERSION=${tag#v}
	else
		VERSION="$(cat packaging/VERSION)~git$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd).$(git rev-parse --short=8 HEAD)"
		git diff --quiet HEAD 2>/dev/null || VERSION="$VERSION.dirty"
	fi
fi
export VERSION

root=dist/pkgroot
rm -rf "$root"
mkdir -p "$root/man" "$root/systemd"

# relayq with cgo: the daemon names submitters, and checks socket_group and
# admin_group, through the C library's user database (NSS: sssd, LDAP,
# systemd's dynamic users), so it needs libc6 (nfpm.yaml). relayq-sendmail
# without cgo: it starts ~0.5 ms sooner, and hands a call to relayq
# whenever /etc/passwd is not certainly what NSS reads
# (cmd/relayq-sendmail/userdb.go).
ldflags="-s -w -X main.version=$VERSION"
CGO_ENABLED=1 GOOS=linux GOARCH=amd64 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$root/" ./cmd/relayq
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$root/" ./cmd/relayq-sendmail

# The units as systemd/ has them, pointed at the packaged binary.
for unit in systemd/relayq.*; do
	sed 's#/usr/local/bin/relayq#/usr/sbin/relayq#g' "$unit" >"$root/systemd/$(basename "$unit")"
done

for page in relayq.8:8 relayq-sendmail.1:1 relayq.toml.5:5; do
	"$root/relayq" help --man "${page#*:}" | gzip -9n >"$root/man/${page%:*}.gz"
done
"$root/relayq" help --completion bash >"$root/relayq.bash-completion"

go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" package \
	--config packaging/nfpm.yaml --packager deb --target "dist/relayq_${VERSION}_amd64.deb" >&2
echo "dist/relayq_${VERSION}_amd64.deb"
