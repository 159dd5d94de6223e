#!/usr/bin/env bash
# The whole test suite: formatting, vet, unit tests and end-to-end tests of
# the real binary, all under the race detector. It installs the real peers
# the end-to-end tests use when they are missing: swaks, msmtp and mail(1)
# (bsd-mailx) as clients, systemd-analyze (package systemd) for the units,
# and Postfix (also its smtp-sink) and Dovecot (LMTP), which the tests run
# as private instances in temporary directories (never the system's
# /etc/postfix or /etc/dovecot). Installing them starts no system mail
# service. debootstrap builds the Debian 12 chroot in which
# TestDebianPackage installs Postfix and the relayq package (cached in
# /var/cache/relayq-test-chroot; the host's packages are never changed).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
for pkg in postfix dovecot-core dovecot-lmtpd msmtp bsd-mailx debootstrap; do
	installed "$pkg" || need+=("$pkg")
done
# systemd-analyze (verify and security of the units in systemd/):
# tests/systemd_test.go. Installing the package starts nothing here.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if ((${#need[@]})); then
	echo "== installing test peers: ${need[*]}"
	log=$(mktemp)
	# Postfix without a system configuration: no main.cf, nothing listening.
	echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
	# Keep the packages' services from starting (invoke-rc.d and
	# deb-systemd-invoke both obey policy-rc.d); only when there is no
	# policy of our own to respect.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		trap '$sudo rm -f "$policy"' EXIT
	fi
	if ! { $sudo apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}"; } >"$log" 2>&1; then
		cat "$log"
		echo "tests/run.sh: installing ${need[*]} failed" >&2
		exit 1
	fi
	rm -f "$log"
	if [ -n "$policy" ]; then
		$sudo rm -f "$policy"
		trap - EXIT
	fi
	# Should a service have started anyway (an init without policy-rc.d),
	# stop the ones this run installed: the tests start their own.
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		for svc in postfix dovecot; do
			if [[ " ${need[*]} " == *" $svc"* ]]; then
				$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
			fi
		done
	fi
fi
# Under this command a missing peer fails the peer tests; a plain
# `go test ./...` without the packages skips them.
export RELAYQ_REAL_PEERS=1

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
# --- fuzzing (issue 5, bad input): each target for a short while, about
# 1.5 minutes in all. Seeds and the inputs kept in testdata/fuzz/ also run
# in every plain `go test`. RELAYQ_FUZZTIME=0 skips this block.
fuzztime=${RELAYQ_FUZZTIME:-10s}
if [ "$fuzztime" != 0 ]; then
	for target in \
		./spool:FuzzNormalizer ./spool:FuzzReadInput ./spool:FuzzPrepare ./spool:FuzzAddress \
		./spool:FuzzIntakeData ./cmd/relayq:FuzzParseSendmailArgs ./config:FuzzParse; do
		echo "== fuzz ${target#*:} (${target%%:*}, $fuzztime)"
		go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "$fuzztime" "${target%%:*}"
	done
fi
# --- end of fuzzing
echo "== go test -race"
go test -race -count=1 -timeout 40m "$@" ./...
