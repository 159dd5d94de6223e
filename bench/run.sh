#!/usr/bin/env bash
# The side-by-side benchmark of issue 6: relayq against a Postfix null
# client, relaying to the same counting sink, on loopback only.
#
#   bash bench/run.sh            full run: every configuration 3 times, medians
#   bash bench/run.sh --quick    one short run of each, for development
#   bash bench/run.sh --profile  relayq only, under `perf record` during one
#                                SMTP run: where its CPU goes, in
#                                bench/out/profile.txt
#   bash bench/run.sh --pprof    relayq only, built with -tags pprof (never
#                                the product: cmd/relayq/pprof.go), Go CPU and
#                                allocation profiles of one SMTP run (SMTP_N,
#                                default 20000), signalled to start after the
#                                daemon is up and to stop once the sink has
#                                every message; the daemon's, the load's and
#                                the sink's CPU µs per message and the top
#                                functions in bench/out/pprof.txt, the
#                                profiles in bench/out/pprof/ (go tool pprof
#                                -http : bench/out/pprof/cpu.pprof for more).
#                                With RELAYQ_PPROF_TRACE=2s, also a Go
#                                execution trace of 2 s from 2 s into the
#                                run (bench/out/pprof/trace.out; go tool
#                                trace for the timeline), and from it the
#                                daemon's off-CPU time in pprof.txt: where
#                                goroutines waited to run (sched), blocked
#                                on channels and locks (sync), and in
#                                system calls (syscall)
#   bash bench/run.sh --e2e      relayq's end to end rate against the
#                                ceiling measured in turn (RUNS rounds, 5 by
#                                default, of SMTP_N messages: ceiling, then
#                                relayq, then each of RELAYQ_OTHER): the
#                                ratio each round and the medians, in
#                                bench/out/e2e.txt. RELAYQ_OTHER lists other
#                                relayq binaries (paths, space-separated;
#                                e.g. main's build), each run the same way
#                                in the same round, so that builds are
#                                compared at the same moment of a shared
#                                machine.
#
# Needs root (Postfix's master refuses to run otherwise) or password-less
# sudo. Installs postfix and strace when missing, without starting the
# system's Postfix. Builds relayq and the tools in bench/ (sink, load,
# procmem, fsyncrate, report), then measures, each on a fresh instance:
#   - SMTP: bench/load sends N messages of 5 KB over 10 sessions (up to 100
#     messages a session) into the system's loopback listener; the sink
#     counts what arrives. Acceptance rate, end-to-end rate, latency
#     p50/p99, peak memory and CPU time per message of the daemon, the
#     load and the sink (bench/procmem). Then the same paced at half the
#     peak rate, for the latency there.
#   - sendmail: `relayq sendmail` and Postfix's `sendmail -C DIR`, run N
#     times one at a time and 8 at a time.
#   - fsyncs per message: a separate, shorter pass under strace -c -f.
#   - ceilings: bench/load straight into the sink; the disk's
#     create+write+fsync+dir-fsync rate with 1 and 8 writers.
# Every run checks the sink's count against the acknowledgements (lost).
# The Markdown table goes to stdout and to bench/out/results.md; the raw
# measurements to bench/out/raw.jsonl, the daemons' logs to bench/out/logs/.
#
# Sizes can be overridden: RUNS, SMTP_N, SENDMAIL_N, FSYNC_N, HALF_SECS.
# relayq runs with its defaults unless RELAYQ_WORKERS ([delivery] workers)
# or RELAYQ_CONNECTIONS ([relay] max_connections) are set. SMTP_PIPELINE=1
# has the load pipeline MAIL, RCPT and DATA (RFC 2920) as Postfix's smtp
# client does (bench/load -pipeline); by default it awaits each reply.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/postfix.sh
root=$PWD

quick=0 profile=0 gopprof=0 e2e=0
case "${1:-}" in
--quick) quick=1 ;;
--e2e) e2e=1 ;;
--profile) profile=1 ;;
--pprof) profile=1 gopprof=1 ;;
"") ;;
*) echo "usage: bash bench/run.sh [--quick | --profile | --pprof | --e2e]" >&2; exit 64 ;;
esac
((!gopprof)) || : "${SMTP_N:=20000}"
((!e2e)) || : "${RUNS:=5}"
if ((quick || profile)); then
	: "${RUNS:=1}" "${SMTP_N:=3000}" "${SENDMAIL_N:=100}" "${FSYNC_N:=1000}" "${HALF_SECS:=4}"
else
	: "${RUNS:=3}" "${SMTP_N:=10000}" "${SENDMAIL_N:=600}" "${FSYNC_N:=3000}" "${HALF_SECS:=15}"
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"

# --- packages: postfix (smtp-sink-free: our sink counts), strace -----------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need=()
((e2e)) || for pkg in postfix strace; do installed "$pkg" || need+=("$pkg"); done
((!profile || gopprof)) || command -v perf >/dev/null 2>&1 || need+=(linux-perf)
if ((${#need[@]})); then
	echo "== installing ${need[*]}" >&2
	# Postfix without a system configuration: no main.cf, nothing listening.
	echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
	# Keep the package's service from starting (policy-rc.d), unless the
	# machine has a policy of its own.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
	fi
	log=$(mktemp)
	if ! { $sudo apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		[ -z "$policy" ] || $sudo rm -f "$policy"
		echo "bench/run.sh: installing ${need[*]} failed" >&2
		exit 1
	fi
	rm -f "$log"
	[ -z "$policy" ] || $sudo rm -f "$policy"
	if [[ " ${need[*]} " == *" postfix "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now postfix >/dev/null 2>&1 || true
	fi
fi

# --- build ---------------------------------------------------------------
out=$root/bench/out
mkdir -p "$out/logs"
work=$(mktemp -d /tmp/rqb.XXXXXX) # short: socket paths are limited to 108 bytes
chmod 755 "$work"
bin=$work/bin
echo "== building relayq and the bench tools" >&2
tags=()
((!gopprof)) || tags=(-tags pprof)
go build "${tags[@]}" -o "$bin/relayq" ./cmd/relayq
go build -o "$bin/" ./bench/sink ./bench/load ./bench/procmem ./bench/fsyncrate ./bench/report

# --- teardown ------------------------------------------------------------
pids=()         # background processes to stop at exit
postfix_etcs=() # Postfix instances to stop at exit
cleanup() {
	local p
	for etc in "${postfix_etcs[@]}"; do
		$sudo /usr/sbin/postfix -c "$etc" stop >/dev/null 2>&1 || true
	done
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	$sudo rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

raw=$out/raw.jsonl
((!profile)) || raw=$out/profile.jsonl # leave the last full run's raw data alone
: >"$raw"
say() { echo "== $*" >&2; }

# freeport prints a loopback TCP port nobody listens on, below the
# kernel's range of ephemeral ports: a port there may be the local end of
# some connection (the load's, another program's), which nothing listens
# on but which a listener cannot bind (one --e2e round stopped so).
ephemeral_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((ephemeral_low > 11000)) || ephemeral_low=32768 # no room below it: take the chance
freeport() {
	local p
	while :; do
		p=$((10000 + RANDOM % (ephemeral_low - 10000)))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# waitgreet PORT: wait (up to 20 s) for an SMTP greeting on 127.0.0.1:PORT.
waitgreet() {
	local i
	for ((i = 0; i < 200; i++)); do
		if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null | grep -q 220; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench/run.sh: nothing greets on 127.0.0.1:$1" >&2
	return 1
}

# jget KEY JSON: the value of a top-level number or boolean in flat JSON.
jget() { grep -o "\"$1\":[^,}]*" <<<"$2" | head -1 | cut -d: -f2; }

# --- the sink ------------------------------------------------------------
"$bin/sink" -ready "$work/sink.ready" 2>"$out/logs/sink.log" &
sink_pid=$!
pids+=($sink_pid)
for ((i = 0; i < 100; i++)); do [ -s "$work/sink.ready" ] && break; sleep 0.05; done
read -r sink_addr sink_stats <"$work/sink.ready"
sink_port=${sink_addr##*:}

# sinkwait RUN WANT: wait until the sink has WANT messages of RUN; prints
# the sink's JSON.
sinkwait() { "$bin/sink" -query "$sink_stats" -run "$1" -want "$2" -timeout "${3:-300s}"; }

# record SYSTEM KIND RUN [name JSON]…: one line of raw.jsonl.
record() {
	local line="{\"system\":\"$1\",\"kind\":\"$2\",\"run\":$3"
	shift 3
	while (($#)); do line+=",\"$1\":$2"; shift 2; done
	echo "$line}" >>"$raw"
}

# --- relayq --------------------------------------------------------------
# start_relayq NAME [WRAP…]: a fresh relayq (state dir in $work/NAME) with a
# loopback listener, relaying to the sink; WRAP (e.g. strace …) runs it.
# Sets rq_port, rq_conf, rq_pid (the daemon) and rq_wrap_pid.
# rq_bin is the relayq binary start_relayq runs (e2e_compare switches it).
rq_bin=$bin/relayq
start_relayq() {
	local name=$1 dir=$work/$1 i
	shift
	mkdir -p "$dir"
	rq_port=$(freeport)
	rq_conf=$dir/relayq.toml
	cat >"$rq_conf" <<EOF
state_dir = "$dir"
[submission]
listen = ["127.0.0.1:$rq_port"]
hostname = "relayq.bench.test"
[relay]
url = "smtp://127.0.0.1:$sink_port"
name = "relayq.bench.test"
${RELAYQ_CONNECTIONS:+max_connections = $RELAYQ_CONNECTIONS}
[relay.tls]
ignore_tls = true
[delivery]
${RELAYQ_WORKERS:+workers = $RELAYQ_WORKERS}
EOF
	"$@" "$rq_bin" serve -c "$rq_conf" 2>"$out/logs/relayq-$name.log" &
	rq_wrap_pid=$!
	pids+=($rq_wrap_pid)
	waitgreet "$rq_port"
	# relayq greets while its queue opens and answers MAIL with 451 until
	# then; `relayq status` exits 0 once it takes mail.
	for ((i = 0; i < 200; i++)); do
		"$rq_bin" status -c "$rq_conf" >/dev/null 2>&1 && break
		sleep 0.05
	done
	rq_pid=$rq_wrap_pid
	if (($#)); then # the daemon is the wrapper's child
		rq_pid=$(cat "/proc/$rq_wrap_pid/task/$rq_wrap_pid/children" | awk '{print $1}')
	fi
}

stop_relayq() {
	kill -TERM "$rq_pid"
	wait "$rq_wrap_pid" || true
}

# --- Postfix -------------------------------------------------------------
# start_postfix NAME [WRAP…]: a fresh Postfix null client in $work/NAME
# (its own config directory and queue), smtpd on a loopback port, relaying
# everything to the sink. Sets pf_port, pf_etc, pf_pidfile.
start_postfix() {
	local name=$1 dir=$work/$1
	shift
	pf_etc=$dir/etc
	pf_port=$(freeport)
	pf_pidfile=$dir/spool/pid/master.pid
	write_postfix_null_client "$dir" "[127.0.0.1]:$sink_port" "$pf_port" # bench/postfix.sh
	postfix_etcs+=("$pf_etc")
	if (($#)); then
		$sudo "$@" /usr/sbin/postfix -c "$pf_etc" start-fg >"$out/logs/postfix-$name.out" 2>&1 &
		pf_wrap_pid=$!
		pids+=($pf_wrap_pid)
	else
		$sudo /usr/sbin/postfix -c "$pf_etc" start >"$out/logs/postfix-$name.out" 2>&1
		pf_wrap_pid=""
	fi
	waitgreet "$pf_port"
	for ((i = 0; i < 100; i++)); do [ -s "$pf_pidfile" ] && break; sleep 0.05; done
	pf_dir=$dir
}

stop_postfix() {
	$sudo /usr/sbin/postfix -c "$pf_etc" stop >/dev/null 2>&1 || true
	[ -z "$pf_wrap_pid" ] || wait "$pf_wrap_pid" || true
	local i
	for ((i = 0; i < 100; i++)); do [ -e "$pf_pidfile" ] && kill -0 "$(tr -dc 0-9 <"$pf_pidfile")" 2>/dev/null || break; sleep 0.1; done
	cp "$pf_dir/postfix.log" "$out/logs/postfix-${pf_dir##*/}.log" 2>/dev/null || true
}

# --- one system ----------------------------------------------------------
# Each system is driven through: start_SYS NAME [WRAP…], stop_SYS, and
# these: smtp_port (its listener), daemon_pid (the root to watch) and
# sendmail_cmd (the command line of its sendmail).
use() {
	sys=$1
	case $sys in
	relayq)
		start() { start_relayq "$@"; smtp_port=$rq_port; daemon_pid=$rq_pid; sendmail_cmd=("$bin/relayq" sendmail -c "$rq_conf" -f load@bench.test sink@bench.test); }
		stop() { stop_relayq; }
		;;
	postfix)
		start() { start_postfix "$@"; smtp_port=$pf_port; daemon_pid=$(tr -dc 0-9 <"$pf_pidfile"); sendmail_cmd=(/usr/sbin/sendmail -C "$pf_etc" -f load@bench.test sink@bench.test); }
		stop() { stop_postfix; }
		;;
	esac
}

# watch PID NAME / unwatch NAME: bench/procmem on PID (memory, CPU time)
# until unwatch, which sets watched to its JSON (null if it printed
# nothing). Both in the same shell: unwatch waits for the watcher.
declare -A watchers
watch() {
	"$bin/procmem" -pid "$1" >"$work/$2.json" &
	watchers[$2]=$!
}
unwatch() {
	kill -TERM "${watchers[$1]}"
	wait "${watchers[$1]}" || true
	watched=$(cat "$work/$1.json")
	: "${watched:=null}"
}

# smtp_run SYS KIND RUN [LOAD FLAGS…]: load the running system's listener,
# watch its and the sink's memory and CPU, wait for the sink; one raw
# record. Prints the load JSON.
smtp_run() {
	local kind=$2 run=$3 id="$1-$2-$3"
	shift 3
	watch "$daemon_pid" mem
	watch "$sink_pid" sinkmem
	local load sink
	load=$("$bin/load" -smtp "127.0.0.1:$smtp_port" -run "$id" -c 10 -per 100 ${SMTP_PIPELINE:+-pipeline} "$@")
	sink=$(sinkwait "$id" "$(jget acked "$load")")
	local mem sinkmem
	unwatch mem
	mem=$watched
	unwatch sinkmem
	sinkmem=$watched
	record "$sys" "$kind" "$run" load "$load" sink "$sink" mem "$mem" sinkmem "$sinkmem"
	[ "$(jget complete "$sink")" = true ] || say "$sys $kind run $run: the sink is missing messages: $sink"
	[ "$(jget failed "$load")" = 0 ] || say "$sys $kind run $run: $(jget failed "$load") failed: $load"
	echo "$load"
}

bench_system() {
	use "$1"
	local r load rate peak=() n
	for ((r = 1; r <= RUNS; r++)); do
		say "$sys: SMTP, $SMTP_N messages, run $r/$RUNS"
		start "$sys-smtp-$r"
		load=$(smtp_run "$sys" smtp "$r" -n "$SMTP_N")
		peak+=("$(jget rate "$load")")
		say "   $(jget rate "$load") msg/s accepted, p99 $(jget p99_ms "$load") ms"
		stop
	done
	# Half the median peak, for HALF_SECS seconds.
	rate=$(printf '%s\n' "${peak[@]}" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)] / 2}')
	n=$(awk -v r="$rate" -v s="$HALF_SECS" 'BEGIN {printf "%d", r * s}')
	for ((r = 1; r <= RUNS; r++)); do
		say "$sys: SMTP paced at $rate msg/s (half the peak), $n messages, run $r/$RUNS"
		start "$sys-half-$r"
		load=$(smtp_run "$sys" half "$r" -n "$n" -rate "$rate")
		say "   p99 $(jget p99_ms "$load") ms"
		stop
	done
	say "$sys: sendmail, $SENDMAIL_N messages, 1 and 8 at a time"
	start "$sys-sendmail"
	for ((r = 1; r <= RUNS; r++)); do
		for c in 1 8; do
			local id="$sys-sendmail$c-$r" sink
			load=$("$bin/load" -run "$id" -n "$SENDMAIL_N" -c "$c" -- "${sendmail_cmd[@]}")
			sink=$(sinkwait "$id" "$(jget acked "$load")")
			record "$sys" "sendmail$c" "$r" load "$load" sink "$sink"
			say "   ×$c run $r: $(jget rate "$load")/s, p50 $(jget p50_ms "$load") ms"
			[ "$(jget failed "$load")" = 0 ] || say "$sys sendmail×$c: $(jget failed "$load") failed: $load"
		done
	done
	stop
	say "$sys: fsyncs per message under strace, $FSYNC_N messages"
	start "$sys-fsync" strace -f -c -e trace=fsync,fdatasync,sync_file_range,syncfs -o "$work/strace-$sys.txt"
	load=$(smtp_run "$sys" fsync-load 1 -n "$FSYNC_N")
	stop
	local calls
	calls=$(awk '$NF ~ /^(fsync|fdatasync|sync_file_range|syncfs)$/ {n += $4} END {print n + 0}' "$work/strace-$sys.txt")
	cp "$work/strace-$sys.txt" "$out/logs/"
	record "$sys" fsync 1 fsync "{\"calls\":$calls,\"messages\":$(jget acked "$load")}"
	say "   $calls fsync calls for $(jget acked "$load") messages"
}

bench_ceiling() {
	local r load sink id
	for ((r = 1; r <= RUNS; r++)); do
		id="ceiling-smtp-$r"
		watch "$sink_pid" sinkmem
		load=$("$bin/load" -smtp "$sink_addr" -run "$id" -c 10 -per 100 ${SMTP_PIPELINE:+-pipeline} -n "$SMTP_N")
		sink=$(sinkwait "$id" "$(jget acked "$load")")
		unwatch sinkmem
		record ceiling smtp "$r" load "$load" sink "$sink" sinkmem "$watched"
		say "ceiling run $r: $(jget rate "$load") msg/s"
	done
	for w in 1 8; do
		for ((r = 1; r <= RUNS; r++)); do
			load=$("$bin/fsyncrate" -dir "$work" -w "$w" -t 3s)
			record disk disk "$r" disk "$load"
			say "disk, $w writer(s), run $r: $(jget rate "$load")/s"
		done
	done
}

# profile_relayq: one SMTP run of relayq under perf record (call graphs),
# acceptance and delivery both; the report by symbol to profile.txt.
profile_relayq() {
	use relayq
	start relayq-profile
	say "relayq: SMTP, $SMTP_N messages, under perf record"
	perf record -F 997 -g -p "$daemon_pid" -o "$out/perf.data" 2>"$out/logs/perf.log" &
	local perf_pid=$!
	local load
	load=$(smtp_run relayq profile 1 -n "$SMTP_N")
	kill -INT "$perf_pid"
	wait "$perf_pid" || true
	stop
	local sink_last
	sink_last=$(tail -1 "$raw" | grep -o '"last_ns":[0-9]*' | cut -d: -f2)
	say "   $(jget rate "$load") msg/s accepted, end to end $(awk -v n="$(jget acked "$load")" -v a="$(jget start_ns "$load")" -v b="$sink_last" 'BEGIN {printf "%.0f", n / ((b - a) / 1e9)}') msg/s"
	{
		echo "# relayq under SMTP load ($SMTP_N messages): $load"
		echo "## self time by symbol"
		perf report -i "$out/perf.data" --stdio --no-children --sort symbol --percent-limit 0.7 -g none 2>/dev/null | grep -v '^$'
		echo "## including callees, by symbol"
		perf report -i "$out/perf.data" --stdio --children --sort symbol --percent-limit 4 -g none 2>/dev/null | grep -v '^$'
	} >"$out/profile.txt"
	say "profile in $out/profile.txt (perf report -i $out/perf.data for more)"
}

# pprof_relayq: one SMTP run of relayq built with -tags pprof; SIGUSR1
# starts its CPU profile once it is up, SIGUSR2 stops it once the sink has
# every message (cmd/relayq/pprof.go). CPU per message of the three
# processes and the top functions to pprof.txt.
pprof_relayq() {
	local dir=$out/pprof
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 777 "$dir"
	use relayq
	RELAYQ_PPROF_DIR=$dir start relayq-pprof # and RELAYQ_PPROF_TRACE, if set
	kill -USR1 "$daemon_pid"
	for ((i = 0; i < 100; i++)); do [ -s "$dir/allocs-start.pprof" ] && break; sleep 0.05; done
	say "relayq: SMTP, $SMTP_N messages, profiled"
	local load
	load=$(smtp_run relayq pprof 1 -n "$SMTP_N")
	kill -USR2 "$daemon_pid"
	for ((i = 0; i < 100; i++)); do [ -s "$dir/allocs-end.pprof" ] && break; sleep 0.05; done
	stop
	local last n
	last=$(tail -1 "$raw")
	n=$(jget acked "$load")
	cp "$bin/relayq" "$dir/relayq"
	{
		echo "# relayq under SMTP load ($SMTP_N messages of 5 KB, 10 sessions), built with -tags pprof"
		echo "load: $load"
		awk -v n="$n" -v l="$last" 'BEGIN {
			split("", v)
			while (match(l, /"cpu_ms":[0-9]+/)) { v[++k] = substr(l, RSTART + 9, RLENGTH - 9); l = substr(l, RSTART + RLENGTH) }
			# in the record: load, mem (relayq), sinkmem; the sink JSON has none
			printf "CPU µs per message: relayq %.0f, load %.0f, sink %.0f (load + sink %.0f)\n", v[2] * 1000 / n, v[1] * 1000 / n, v[3] * 1000 / n, (v[1] + v[3]) * 1000 / n
		}'
		echo "## CPU: self time"
		go tool pprof -top -nodecount=45 "$dir/relayq" "$dir/cpu.pprof" 2>/dev/null
		echo "## CPU: including callees"
		go tool pprof -top -cum -nodecount=70 "$dir/relayq" "$dir/cpu.pprof" 2>/dev/null
		echo "## allocations during the run (bytes), including callees"
		go tool pprof -top -cum -nodecount=40 -sample_index=alloc_space -diff_base "$dir/allocs-start.pprof" "$dir/relayq" "$dir/allocs-end.pprof" 2>/dev/null
		echo "## allocations during the run (count), self"
		go tool pprof -top -nodecount=40 -sample_index=alloc_objects -diff_base "$dir/allocs-start.pprof" "$dir/relayq" "$dir/allocs-end.pprof" 2>/dev/null
		local kind
		for kind in sched sync syscall; do
			[ -s "$dir/trace.out" ] || break
			go tool trace -pprof="$kind" "$dir/trace.out" >"$dir/$kind.pprof" 2>/dev/null || continue
			echo "## off-CPU from the execution trace: $kind, including callees"
			go tool pprof -top -cum -nodecount=30 "$dir/relayq" "$dir/$kind.pprof" 2>/dev/null
		done
	} >"$out/pprof.txt"
	say "profile in $out/pprof.txt; profiles and binary in $dir"
}

# e2e_compare: RUNS rounds of the ceiling run, then relayq's SMTP run
# (then RELAYQ_OTHER's); each round's end to end rates and ratios, and the
# medians, to e2e.txt. The ratio of two runs a few seconds apart moves less
# with the rest of the machine's load than either rate does.
e2e_compare() {
	local builds=("$bin/relayq") names=(this) r i load sink id rate b
	for b in ${RELAYQ_OTHER:-}; do
		builds+=("$b") names+=("$(basename "$b")")
	done
	use relayq
	local report=$out/e2e.txt
	{
		echo "# end to end msg/s, $SMTP_N messages of 5 KB, 10 sessions; ceiling = load → sink in the same round"
		printf "%-6s %9s" round ceiling
		for i in "${!builds[@]}"; do printf " %9s %7s %12s" "${names[i]}" ratio "µs/msg+l+s"; done
		echo
	} >"$report"
	for ((r = 1; r <= RUNS; r++)); do
		id="ceiling-e2e-$r"
		load=$("$bin/load" -smtp "$sink_addr" -run "$id" -c 10 -per 100 ${SMTP_PIPELINE:+-pipeline} -n "$SMTP_N")
		sink=$(sinkwait "$id" "$(jget acked "$load")")
		local ceiling
		ceiling=$(e2e_rate "$load" "$sink")
		record ceiling e2e "$r" load "$load" sink "$sink"
		local line
		line=$(printf "%-6s %9.0f" "$r" "$ceiling")
		for i in "${!builds[@]}"; do
			rq_bin=${builds[i]}
			start "relayq-e2e-${names[i]}-$r"
			load=$(smtp_run relayq "e2e-${names[i]}" "$r" -n "$SMTP_N")
			stop
			sink=$(tail -1 "$raw")
			rate=$(e2e_rate "$load" "$sink")
			line+=$(awk -v r="$rate" -v c="$ceiling" -v l="$(tail -1 "$raw")" -v n="$(jget acked "$load")" 'BEGIN {
				while (match(l, /"cpu_ms":[0-9]+/)) { v[++k] = substr(l, RSTART + 9, RLENGTH - 9); l = substr(l, RSTART + RLENGTH) }
				printf " %9.0f %6.1f%% %5.0f+%-6.0f", r, 100 * r / c, v[2] * 1000 / n, (v[1] + v[3]) * 1000 / n
			}')
		done
		echo "$line" | tee -a "$report" >&2
	done
	rq_bin=$bin/relayq
	# Medians per column (the round number's is meaningless).
	awk 'NR > 2 { for (i = 2; i <= NF; i++) { gsub(/%/, "", $i); split($i, p, "+"); v[i, NR] = p[1] + 0; if (p[2] != "") w[i, NR] = p[2] + 0 } n = NR; f = NF }
		function med(i, a,   k, m, x, t) { m = 0; for (k = 3; k <= n; k++) x[++m] = a[i, k]
			for (k = 1; k <= m; k++) for (t = k + 1; t <= m; t++) if (x[t] < x[k]) { y = x[k]; x[k] = x[t]; x[t] = y }
			return m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2 }
		END { printf "%-6s", "median"; for (i = 2; i <= f; i++) { if ((i - 2) % 3 == 0 && i > 2) printf " %5.0f+%-6.0f", med(i, v), med(i, w); else printf " %9.1f", med(i, v) } print "" }' "$report" | tee -a "$report" >&2
	say "table in $report"
}

# e2e_rate LOAD SINK: acknowledged messages per second from the load's
# first MAIL until the sink had the last of them.
e2e_rate() {
	awk -v n="$(jget acked "$1")" -v a="$(jget start_ns "$1")" -v b="$(jget last_ns "$2")" 'BEGIN {printf "%.0f", n / ((b - a) / 1e9)}'
}

say "work dir $work; sink on $sink_addr; RUNS=$RUNS SMTP_N=$SMTP_N SENDMAIL_N=$SENDMAIL_N"
if ((e2e)); then
	e2e_compare
	exit 0
fi
if ((gopprof)); then
	pprof_relayq
	exit 0
fi
if ((profile)); then
	profile_relayq
	exit 0
fi
bench_ceiling
bench_system relayq
bench_system postfix

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
fs=$(df -T "$work" | awk 'NR == 2 {print $2 " on " $1}')
machine="$(nproc) CPU ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr), state on $fs; $(/usr/sbin/postconf -d -h mail_version 2>/dev/null | sed 's/^/Postfix /'); $(go version | awk '{print $3}')"
[ -z "${RELAYQ_WORKERS:-}${RELAYQ_CONNECTIONS:-}" ] ||
	machine+="; relayq with workers = ${RELAYQ_WORKERS:-default}, max_connections = ${RELAYQ_CONNECTIONS:-default}"
"$bin/report" -machine "$machine" -cores "$(nproc)" <"$raw" | tee "$out/results.md"
