#!/usr/bin/env bash
# `relayq sendmail` calls per second, and what bounds them (issue 6).
#
#   bash bench/sendmail.sh
#
# Starts bench/sink and one relayq daemon relaying to it (loopback, a
# temporary state directory; no root, no Postfix: bench/run.sh compares with
# Postfix), then runs with bench/load, N times one at a time and N times 8
# at a time, each of:
#   /bin/true                  exec from Go, nothing more
#   bench/nop                  a Go program that does nothing: Go's start
#   relayq sendmail --help     relayq's start: runtime, package inits, exit
#   relayq sendmail -f … rcpt  the whole call, a 5 KB message on stdin, as
#                              bench/run.sh calls it: config, Prepare, SMTP
#                              over the unix socket, the daemon's commit
#                              (fsync) and 250, exit
# for relayq built as `go build` does (cgo, dynamically linked) and with
# CGO_ENABLED=0 (static). The variants take turns, RUNS times; the table
# gives the medians: calls/s and the p50 of one call's wall time.
#
# Sizes: N (default 300), RUNS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${N:=300}" "${RUNS:=3}"

work=$(mktemp -d /tmp/rqs.XXXXXX) # short: socket paths are limited to 108 bytes
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building" >&2
go build -o "$work/relayq" ./cmd/relayq
CGO_ENABLED=0 go build -o "$work/relayq-static" ./cmd/relayq
go build -o "$work/" ./bench/sink ./bench/load ./bench/nop

"$work/sink" -ready "$work/sink.ready" 2>"$work/sink.log" &
pids+=($!)
for ((i = 0; i < 100; i++)); do [ -s "$work/sink.ready" ] && break; sleep 0.05; done
read -r sink_addr _ <"$work/sink.ready"

mkdir "$work/state"
conf=$work/relayq.toml
cat >"$conf" <<EOC
state_dir = "$work/state"
[submission]
hostname = "relayq.bench.test"
[relay]
url = "smtp://$sink_addr"
name = "relayq.bench.test"
[relay.tls]
ignore_tls = true
EOC
"$work/relayq" serve -c "$conf" 2>"$work/relayq.log" &
pids+=($!)
for ((i = 0; i < 200; i++)); do [ -S "$work/state/submit.sock" ] && break; sleep 0.05; done
[ -S "$work/state/submit.sock" ] || { cat "$work/relayq.log" >&2; exit 1; }

names=("/bin/true" "Go program doing nothing" "relayq sendmail --help" "relayq sendmail --help (static)" "relayq sendmail" "relayq sendmail (static)")
cmds=(
	"/bin/true"
	"$work/nop"
	"$work/relayq sendmail --help"
	"$work/relayq-static sendmail --help"
	"$work/relayq sendmail -c $conf -f load@bench.test sink@bench.test"
	"$work/relayq-static sendmail -c $conf -f load@bench.test sink@bench.test"
)
jget() { grep -o "\"$1\":[^,}]*" <<<"$2" | head -1 | cut -d: -f2; }
declare -A res
for ((r = 1; r <= RUNS; r++)); do
	for i in "${!cmds[@]}"; do
		for c in 1 8; do
			# shellcheck disable=SC2086 # the command line splits into words
			out=$("$work/load" -run "s$r-$i-$c" -n "$N" -c "$c" -- ${cmds[$i]})
			[ "$(jget failed "$out")" = 0 ] || { echo "${names[$i]}: $out" >&2; exit 1; }
			res[$i,$c,rate]+="$(jget rate "$out") "
			res[$i,$c,p50]+="$(jget p50_ms "$out") "
		done
	done
	echo "== run $r/$RUNS done" >&2
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {printf "%.2f", v[int((NR+1)/2)]}'; }
echo "## relayq sendmail: calls per second ($N calls, medians of $RUNS runs; $(nproc) CPU, $(go env GOVERSION))"
echo
echo "| command | ×1 calls/s | ×1 p50 (ms) | ×8 calls/s | ×8 p50 (ms) |"
echo "|---|---|---|---|---|"
for i in "${!cmds[@]}"; do
	printf "| %s | %.0f | %s | %.0f | %s |\n" "${names[$i]}" \
		"$(median <<<"${res[$i,1,rate]}")" "$(median <<<"${res[$i,1,p50]}")" \
		"$(median <<<"${res[$i,8,rate]}")" "$(median <<<"${res[$i,8,p50]}")"
done
