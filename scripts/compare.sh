#!/usr/bin/env bash
# compare.sh — the same echoload matrix against echod (io_uring and epoll),
# the C reference servers in bench/c (c-uring: recv/send/accept through an
# io_uring; c-epoll: read/write after epoll readiness) and the peer echo
# servers in bench/peers (stdlib, gnet, netpoll, nbio), in one run, on
# loopback. Prints a table with each server's ratio to echod on io_uring
# (and each server's CPU per message over c-uring's) and writes it as
# Markdown and JSON under results/compare-<UTC time>/.
#
#   scripts/compare.sh              # the default matrix, 5 s per cell (~3.5 min)
#   QUICK=1 scripts/compare.sh      # a smoke run, ~1 s per cell (~50 s)
#   scripts/compare.sh --help       # this text; nothing is built or run
#
# Settings are environment variables; the script takes no other arguments.
# Environment:
#   DURATION, WARMUP   per cell (default 5s, 1s; QUICK=1: 1s, 200ms)
#   SERVERS            which servers, in table order (default: all, i.e.
#                      "echod-uring echod-uring-poll echod-epoll c-uring
#                      c-epoll stdlib gnet netpoll nbio"; echod-uring moves
#                      bytes through the ring, echod-uring-poll after
#                      readiness polls, as on a kernel before 6.0;
#                      echod-uring-inc, echod-uring-locked,
#                      echod-uring-parked and echod-epoll-parked, not in
#                      the default list, through the ring with
#                      --recv-incremental, with --lock-loops, or with
#                      loops parked in Go's netpoller: --kernel-wait=false;
#                      c-uring-gather, not in it either, is c-uring with
#                      --gather: batches gathered under load as echod's
#                      KernelWait loops do)
#   CELLS              CONNSxSIZE list (default "1x64 100x64 1000x64 50x16384")
#   PIPELINE           messages in flight per connection (default 1)
#   ROUNDS             run the whole matrix this many times, servers taking
#                      turns each round, and report each figure's median
#                      (default 1; ROUNDS=3 DURATION=3s, ~7 min, steadies a
#                      busy machine)
#   PIN=0              do not pin server and client to separate CPUs
#   SYSCALLS=0         do not count the server's syscalls per message (by
#                      default counted with `perf stat -e raw_syscalls:sys_enter`
#                      over the measured phase where perf allows it, else
#                      with bench/c/syscount, which reads the same tracepoint)
#   ECHOD_TAGS         extra build tags for echod (default none)
#   PREBUILT=DIR       build nothing: run the binaries already in DIR (echod,
#                      echoload, the peers, comparetable, and the C servers
#                      where there), e.g. built by scripts/bundle.sh and
#                      copied to a benchmark machine that has no Go or
#                      liburing-dev
#   CPUS="S C"         pin the server to CPU S and echoload to CPU C rather
#                      than the first two this process may use (on a big
#                      machine: two CPUs that are not hyper-thread siblings);
#                      each is a taskset list (C may be "1,2,3" or "1-3")
#
# The C servers are built with bench/c/Makefile (a C compiler; c-uring also
# needs liburing-dev, which the script installs with apt-get where it is
# missing, as `make bench-ring-c` does). A C server that does not build is
# skipped with a message; the run goes on without it.
#
# With 2 or more CPUs the servers run on the first CPU this process may use
# and echoload on the second (taskset), and every server gets one event
# loop (a Go program's GOMAXPROCS follows its CPU mask; the C servers have
# one thread). All servers start at once and the cells take turns server by
# server. On 2 cores the client saturates its CPU first from ~100
# connections up, so compare server CPU µs per message there (echoload reads
# the server's utime+stime from /proc at the measured phase's ends).
#
# The script exits 1 when no server started or no cell produced a report,
# and 2 for a bad setting (CPUS naming a CPU it may not use, say). Ctrl-C
# or SIGTERM (timeout) during the matrix ends it after the cell under way,
# writes the table from the cells measured, and exits 130; a second one
# exits at once.
#
# Every process this script starts is stopped by its PID on exit.
set -euo pipefail

# usage prints the header above, without its comment marks.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
for arg in "$@"; do
	case $arg in
	-h | -help | --help | help)
		usage
		exit 0
		;;
	*)
		printf 'compare.sh: unknown argument %q: settings are environment variables (QUICK=1 ROUNDS=3 ...); see --help\n' "$arg" >&2
		exit 2
		;;
	esac
done

# A relative PREBUILT names a directory from where the script was started,
# or else from the repository's root, where it runs.
if [[ -n ${PREBUILT-} && $PREBUILT != /* && -d $PREBUILT ]]; then
	PREBUILT=$PWD/$PREBUILT
fi
cd "$(dirname "$0")/.."
root=$PWD

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	DURATION=${DURATION:-1s}
	WARMUP=${WARMUP:-200ms}
else
	DURATION=${DURATION:-5s}
	WARMUP=${WARMUP:-1s}
fi
SERVERS=${SERVERS:-"echod-uring echod-uring-poll echod-epoll c-uring c-epoll stdlib gnet netpoll nbio"}
CELLS=${CELLS:-"1x64 100x64 1000x64 50x16384"}
PIPELINE=${PIPELINE:-1}
ROUNDS=${ROUNDS:-1}
PIN=${PIN:-1}
SYSCALLS=${SYSCALLS:-1}
ECHOD_TAGS=${ECHOD_TAGS-}

PREBUILT=${PREBUILT-}
CPUS=${CPUS-}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$root/results/compare-$stamp
bin=$root/bin/compare
if [[ -n $PREBUILT ]] && ! bin=$(cd "$PREBUILT" 2>/dev/null && pwd); then
	printf "compare: PREBUILT=%s: no such directory (here or under %s)\n" "$PREBUILT" "$root" >&2
	exit 2
fi
mkdir -p "$out/cells" "$out/logs" "$bin"

say() { printf 'compare: %s\n' "$*" >&2; }

# --- processes: every one we start is recorded and stopped by PID ---------
# shellcheck source=scripts/servers.sh
source "$root/scripts/servers.sh"
trap cleanup EXIT
# INT or TERM before the matrix exits at once; during it, the cell being
# measured ends, and the table is written from the cells measured so far
# before the script exits 130 (benchbox.sh bounds each step with timeout,
# which sends TERM: it must not lose a whole run's table for its tail).
interrupted=0 in_matrix=0
on_signal() {
	((in_matrix && !interrupted)) || exit 130 # a second signal: at once
	interrupted=1
}
trap on_signal INT TERM

# --- build -------------------------------------------------------------------
declare -A c_built=()
wants() { [[ " $SERVERS " == *" $1 "* ]]; }
have_echod=0
if [[ -n $PREBUILT ]]; then
	say "building nothing: running the binaries in $bin (PREBUILT)"
	for f in echoload comparetable; do
		[[ -x $bin/$f ]] || { say "PREBUILT=$PREBUILT has no $f"; exit 2; }
	done
	[[ -x $bin/echod ]] && have_echod=1
	[[ -x $bin/echo_uring ]] && c_built[c-uring]=1 c_built[c-uring-gather]=1
	[[ -x $bin/echo_epoll ]] && c_built[c-epoll]=1
else
	say "building into $bin"
	go build -o "$bin/echoload" ./cmd/echoload
	if [[ -d cmd/echod ]]; then
		if go build -tags "$ECHOD_TAGS" -o "$bin/echod" ./cmd/echod; then
			have_echod=1
		else
			say "WARNING: cmd/echod does not build; echod is skipped"
		fi
	else
		say "WARNING: ./cmd/echod does not exist yet; echod is skipped"
	fi
	(cd bench/peers && go build -o "$bin/" ./stdlib ./gnet ./netpoll ./nbio ./comparetable)

	# The C reference servers, each only if asked for. A failed build skips that
	# server (with the compiler's last lines) and never fails the run.
	# have_liburing reports whether liburing's header is there, installing
	# liburing-dev with apt-get where it is missing.
	have_liburing() {
		printf '#include <liburing.h>\n' | "${CC:-cc}" -E -x c - >/dev/null 2>&1 && return 0
		command -v apt-get >/dev/null || return 1
		say "installing liburing-dev for c-uring (apt-get)"
		{ apt-get update -qq && apt-get install -y -qq liburing-dev; } >"$out/logs/apt-get.log" 2>&1
	}
	build_c() {
		local srv=$1 prog=$2
		if ! make_c "$out/logs/build-$srv.log" "$prog"; then
			say "WARNING: $srv does not build; skipped (bench/c/$prog.c; log: $out/logs/build-$srv.log):"
			tail -n 3 "$out/logs/build-$srv.log" >&2 || true
			return 1
		fi
		c_built[$srv]=1
	}
	if wants c-uring || wants c-uring-gather; then
		if have_liburing; then
			build_c c-uring echo_uring && c_built[c-uring-gather]=1 || true
		else
			say "WARNING: liburing-dev is missing and could not be installed (log: $out/logs/apt-get.log); c-uring is skipped"
		fi
	fi
	if wants c-epoll; then build_c c-epoll echo_epoll || true; fi
fi

# --- pinning -----------------------------------------------------------------
ncpu=$(nproc --all) # the machine's, for the report
server_pin=()
client_pin=()
loops=0
mapfile -t cpus < <(allowed_cpus)
if [[ -n $CPUS ]]; then
	# A CPU this process may not run on would make taskset fail for every
	# server: refuse it here, with the list it may use.
	# Each word is a taskset list (benchbox.sh gives echoload "1,2,3"):
	# every CPU in it, ranges expanded, is checked.
	read -r -a words <<<"$CPUS" # read: no globbing of a stray *
	for word in "${words[@]}"; do
		IFS=, read -r -a parts <<<"$word"
		if [[ $word == ,* || $word == *, || $word == *,,* ]]; then
			parts+=("") # an empty part: refused below
		fi
		for part in "${parts[@]}"; do
			lo=${part%-*} hi=${part#*-}
			if ! [[ $lo =~ ^[0-9]+$ && $hi =~ ^[0-9]+$ ]] || ((10#$lo > 10#$hi)); then
				say "CPUS=\"$CPUS\": \"$part\" is not a CPU number or range (N or N-M); see --help"
				exit 2
			fi
			for ((c = 10#$lo; c <= 10#$hi; c++)); do
				if [[ " ${cpus[*]} " != *" $c "* ]]; then
					say "CPUS=\"$CPUS\": CPU $c is not one this process may use (${cpus[*]}); see --help"
					exit 2
				fi
			done
		done
	done
	read -r -a cpus <<<"$CPUS"
fi
if [[ $PIN == 1 && ${#cpus[@]} -ge 2 ]] && command -v taskset >/dev/null; then
	server_pin=(taskset -c "${cpus[0]}")
	client_pin=(taskset -c "${cpus[1]}")
	loops=1
	pinning="server on CPU ${cpus[0]}, echoload on CPU ${cpus[1]} (taskset); one event loop per server"
else
	pinning="not pinned (${#cpus[@]} CPUs allowed, PIN=$PIN); servers use their default loop count"
fi
say "$pinning"

# --- syscall counting ---------------------------------------------------------
# seconds D prints a Go duration (5s, 200ms, 1.5s) in seconds for sleep.
seconds() {
	case $1 in
	*ms) awk -v v="${1%ms}" 'BEGIN { print v / 1000 }' ;;
	*s) echo "${1%s}" ;;
	*) say "duration $1: use s or ms"; return 1 ;;
	esac
}
# Where perf is missing, bench/c's syscount counts the same tracepoint.
count_syscalls=0
if [[ $SYSCALLS == 1 ]] && command -v perf >/dev/null &&
	perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null; then
	count_syscalls=1
	say "counting server syscalls with perf over each measured phase"
elif [[ $SYSCALLS == 1 ]] && { [[ -x $bin/syscount ]] || [[ -n $PREBUILT ]] ||
	make_c "$out/logs/build-syscount.log" syscount; } &&
	"$bin/syscount" $$ 1 >/dev/null 2>&1; then
	count_syscalls=2
	say "counting server syscalls with bench/c/syscount (no perf) over each measured phase"
else
	say "not counting syscalls (SYSCALLS=$SYSCALLS, or neither perf nor bench/c/syscount can read the raw_syscalls tracepoint)"
fi
warmup_s=$(seconds "$WARMUP")
duration_s=$(seconds "$DURATION")
duration_ms=$(awk -v s="$duration_s" 'BEGIN { printf "%d", s * 1000 }')

# --- servers -----------------------------------------------------------------


# wait_ready PID ADDR: poll with one echoed message until the server answers
# (deadline 15 s) or dies.
wait_ready() {
	local pid=$1 addr=$2
	for _ in $(seq 150); do
		running "$pid" || return 1
		if "$bin/echoload" --addr "$addr" --messages 1 --warmup 0s --timeout 1s --quiet >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# Every server is started once, up front, each on its own port and all on
# the server CPU; an idle one costs nothing. The cells then take turns
# server by server (round → cell → server), so a change in the machine's
# background load lands on every server alike instead of on whichever
# happened to run at that moment.
declare -A srv_pid=() srv_addr=()
ready=()
for srv in $SERVERS; do
	if [[ $srv == echod-* && $have_echod == 0 ]]; then
		say "$srv: skipped (no echod)"
		continue
	fi
	if [[ $srv == c-* && -z ${c_built[$srv]-} ]]; then
		say "$srv: skipped (not built)"
		continue
	fi
	server_cmd "$srv" "$loops" || continue
	log=$out/logs/$srv.log
	"${server_pin[@]}" "${cmd[@]}" >"$log" 2>&1 &
	pid=$!
	live[$pid]=1
	if ! addr=$(bound_addr "$pid" "$log") || ! wait_ready "$pid" "$addr"; then
		say "$srv: did not start or answer; skipped (log: $log)"
		tail -n 3 "$log" >&2 || true
		stop_pid "$pid"
		continue
	fi
	say "$srv: pid $pid on $addr"
	srv_pid[$srv]=$pid
	srv_addr[$srv]=$addr
	ready+=("$srv")
done
if ((${#ready[@]} == 0)); then
	say "FAILED: no server started (SERVERS=\"$SERVERS\"); see the messages above and the logs in $out/logs/"
	exit 1
fi

started=$(date -u +%s)
reports=0 # cells whose echoload wrote a report
in_matrix=1
for round in $(seq "$ROUNDS"); do
	((interrupted == 0)) || break
	[[ $ROUNDS == 1 ]] || say "round $round of $ROUNDS"
	for cell in $CELLS; do
		((interrupted == 0)) || break
		conns=${cell%x*}
		size=${cell#*x}
		for srv in "${ready[@]}"; do
			((interrupted == 0)) || break
			pid=${srv_pid[$srv]}
			addr=${srv_addr[$srv]}
			f=$out/cells/${srv}_${cell}_r$round
			if ! running "$pid"; then
				say "  $cell $srv: server exited; see $out/logs/$srv.log"
				continue
			fi
			rc=0
			perfpid=
			# echoload runs in the background and is waited for: a signal
			# to this script ends the wait at once, and the cell is waited
			# for again below (on_signal).
			"${client_pin[@]}" "$bin/echoload" --addr "$addr" --conns "$conns" --size "$size" \
				--pipeline "$PIPELINE" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$pid" \
				--json --quiet >"$f.json" 2>"$f.err" &
			cpid=$!
			live[$cpid]=1
			if [[ $count_syscalls != 0 ]]; then
				# perf counts over [warmup, warmup+duration], echoload's
				# measured phase give or take its connect time; comparetable
				# divides the count by msgs/s × the window.
				sleep "$warmup_s"
				if [[ $count_syscalls == 1 ]]; then
					perf stat -x, -e raw_syscalls:sys_enter -p "$pid" --timeout "$duration_ms" -o "$f.perf" &
				else
					"$bin/syscount" "$pid" "$duration_ms" >"$f.perf" &
				fi
				perfpid=$!
				live[$perfpid]=1
			fi
			wait "$cpid" || rc=$?
			# A trapped signal ends wait early: the cell goes on to its end
			# (or its own interruption; comparetable leaves it out then).
			if ((interrupted && rc > 128)); then
				rc=0
				wait "$cpid" || rc=$?
			fi
			unset "live[$cpid]"
			summary=$(sed -n 's/.*"msgs_per_sec": \([0-9]*\).*/\1 msgs\/s/p' "$f.json" | head -n 1)
			if [[ -n $perfpid ]]; then
				wait "$perfpid" 2>/dev/null || true
				unset "live[$perfpid]"
				if n=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$f.perf" 2>/dev/null) && [[ -n $n ]]; then
					echo "$n $duration_s" >"$f.sys"
				fi
			fi
			[[ -z $summary ]] || reports=$((reports + 1))
			say "  $cell $srv: ${summary:-no report} (exit $rc)"
			[[ $rc == 0 ]] || head -n 2 "$f.err" >&2 || true
		done
	done
done
for srv in "${ready[@]}"; do stop_pid "${srv_pid[$srv]}"; done
elapsed=$(($(date -u +%s) - started))
((interrupted == 0)) || say "interrupted: the table holds the cells measured before the signal"

{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $ncpu CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r), $(if [[ -n $PREBUILT ]]; then echo "prebuilt binaries"; elif command -v go >/dev/null; then go version | cut -d' ' -f3; fi)"
	if [[ -n $PREBUILT && -f $bin/SOURCE ]]; then
		echo "source: $(cat "$bin/SOURCE") (binaries built by scripts/bundle.sh)"
	else
		echo "source: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && echo ' with uncommitted changes')"
	fi
	echo "pinning: $pinning"
	echo "each cell: echoload --pipeline $PIPELINE --warmup $WARMUP --duration $DURATION, closed loop, every byte checked; $ROUNDS round(s), median shown"
	echo "command: QUICK=$QUICK ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP scripts/compare.sh (matrix took ${elapsed}s)"
	[[ $have_echod == 1 ]] || echo "echod: not built (no ./cmd/echod); ratios are missing"
} >"$out/meta.txt"

base=echod-uring
have() { compgen -G "$out/cells/${1}_*.json" >/dev/null; }
have "$base" || base=echod-epoll
have "$base" || base=stdlib
echo
# c-uring, the C io_uring server, is the limit on this machine: every
# server's CPU per message is also shown over its, where it ran.
ref=()
have c-uring && ref=(--ref c-uring)
table_rc=0
"$bin/comparetable" --dir "$out" --servers "$SERVERS" --cells "$CELLS" --base "$base" "${ref[@]}" --meta "$out/meta.txt" || table_rc=$?
in_matrix=0 # the table is written: a signal now exits at once
echo
say "results: $out/compare.md, $out/compare.json, per-cell reports in $out/cells/"
((interrupted == 0)) || exit 130
if ((reports == 0)); then
	say "FAILED: no cell produced a report; see $out/cells/*.err and $out/logs/"
	exit 1
fi
if ((table_rc != 0)); then
	say "FAILED: comparetable exited $table_rc"
	exit "$table_rc"
fi
