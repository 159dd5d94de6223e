#!/usr/bin/env bash
# The whole test suite: formatting, vet, unit tests and end-to-end tests of
# the real binary, all under the race detector. It installs the real peers
# the end-to-end tests use when they are missing: swaks, msmtp and mail(1)
# (bsd-mailx) as clients, systemd-analyze (package systemd) for the units,
# nss-systemd (package libnss-systemd) for a user only NSS knows,
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
for pkg in postfix dovecot-core dovecot-lmtpd msmtp bsd-mailx debootstrap strace; do
	installed "$pkg" || need+=("$pkg")
done
# systemd-analyze (verify and security of the units in systemd/):
# tests/systemd_test.go. Installing the package starts nothing here.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# A user only NSS knows (TestSendmailUserFromNSS: relayq-sendmail must give
# such a user the name relayq, which asks NSS, gives): nss-systemd reads
# user records from /run/userdb; its package adds "systemd" to the passwd
# and group lines of /etc/nsswitch.conf.
installed libnss-systemd || need+=(libnss-systemd)
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
# libnss-systemd's postinst adds "systemd" to nsswitch.conf's passwd line;
# where that file was edited so that it did not, do what it would have done.
if ! grep -qE '^passwd:.*[[:space:]]systemd([[:space:]]|$)' /etc/nsswitch.conf; then
	echo "== /etc/nsswitch.conf: adding systemd to passwd and group (nss-systemd, as libnss-systemd does)"
	$sudo sed -i -E 's/^(passwd|group):([^#]*)$/\1:\2 systemd/' /etc/nsswitch.conf
fi
# exim (tests/exim_test.go), OpenSMTPD (tests/opensmtpd_test.go) and
# chasquid (tests/chasquid_test.go) as strict upstream relays: Debian's
# exim4-daemon-light and opensmtpd conflict with postfix as packages, and
# chasquid's would set up a system mail service, so none is installed:
# each .deb is downloaded into a cache of its own and unpacked there
# (dpkg -x), and the libraries it links are installed (they conflict with
# nothing). Each test runs its
# peer with a configuration of its own; exim and OpenSMTPD in a mount
# namespace that adds their users (and OpenSMTPD's spool, run and helper
# directories): nothing on the host changes.
unpack_peer() { # PACKAGE CACHE BINARY (relative to the unpacked root)
	local pkg=$1 cache=$2 bin=$3 deb dep libs=()
	[ -x "$cache/root/$bin" ] && return 0
	echo "== fetching $pkg into $cache (unpacked, not installed)"
	$sudo mkdir -p "$cache"
	if ! (cd "$cache" && { $sudo apt-get download -qq "$pkg" 2>/dev/null ||
		{ $sudo apt-get update -qq && $sudo apt-get download -qq "$pkg"; }; }); then
		echo "tests/run.sh: cannot download $pkg" >&2
		exit 1
	fi
	deb=$(ls -t "$cache/${pkg}"_*.deb | head -n1)
	for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/\|.*//; s/[[:space:]]//g'); do
		case "$dep" in lib*) installed "$dep" || libs+=("$dep") ;; esac
	done
	if ((${#libs[@]})); then
		echo "== installing what $pkg links: ${libs[*]}"
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${libs[@]}" >/dev/null
	fi
	$sudo rm -rf "$cache/root"
	$sudo dpkg -x "$deb" "$cache/root"
}
unpack_peer exim4-daemon-light /var/cache/relayq-test-exim usr/sbin/exim4
unpack_peer opensmtpd /var/cache/relayq-test-opensmtpd usr/sbin/smtpd
unpack_peer chasquid /var/cache/relayq-test-chasquid usr/bin/chasquid
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
#
# A finding always writes its input to testdata/fuzz/ (a crash, a failed
# check, or a hang: "fuzzing process hung"). Go's coordinator can also fail
# a run at the -fuzztime deadline with a bare "context deadline exceeded"
# and no input (golang/go#51484: a worker still busy, e.g. minimising a new
# input, when the clock runs out). That run is tried once more; a second
# bare failure, or any failure that wrote an input, fails the suite.
# Minimising a new input is held to 2 s (the default is 60 s): FuzzIntakeData
# runs a whole SMTP session and commit per input, and its minimisations
# took most of a 10 s run.
fuzztime=${RELAYQ_FUZZTIME:-10s}
fuzz_once() { # package target → 0 passed, 1 failed with an input, 2 bare deadline
	local out status
	out=$(mktemp)
	set +e
	go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$1" 2>&1 | tee "$out"
	status=${PIPESTATUS[0]}
	set -e
	if [ "$status" != 0 ] && ! grep -q 'Failing input written to' "$out" && grep -q 'context deadline exceeded' "$out"; then
		status=bare
	fi
	rm -f "$out"
	case $status in 0) return 0 ;; bare) return 2 ;; *) return 1 ;; esac
}
if [ "$fuzztime" != 0 ]; then
	for target in \
		./spool:FuzzNormalizer ./spool:FuzzReadInput ./spool:FuzzPrepare ./spool:FuzzAddress \
		./spool:FuzzIntakeData ./cmd/internal/sendmail:FuzzParseSendmailArgs ./config:FuzzParse \
		./transport:FuzzStuffer ./transport:FuzzChunkBody ./queue:FuzzDecodeMessage ./rewrite:FuzzKeepsHeader; do
		pkg=${target%%:*} name=${target#*:}
		echo "== fuzz $name ($pkg, $fuzztime)"
		result=0
		fuzz_once "$pkg" "$name" || result=$?
		if [ "$result" = 2 ]; then
			echo "== fuzz $name: stopped at the deadline with no failing input (golang/go#51484); once more"
			result=0
			fuzz_once "$pkg" "$name" || result=$?
		fi
		if [ "$result" != 0 ]; then
			echo "fuzz $name failed"; exit 1
		fi
	done
fi
# --- end of fuzzing
echo "== go test -race"
go test -race -count=1 -timeout 40m "$@" ./...
