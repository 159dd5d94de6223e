#!/usr/bin/env bash
# The whole test suite: formatting, vet, unit tests and end-to-end tests of
# the real binary, all under the race detector. It installs the real peers
# the end-to-end tests use (swaks) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
if ((${#need[@]})); then
	echo "== installing test peers: ${need[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 40m "$@" ./...
