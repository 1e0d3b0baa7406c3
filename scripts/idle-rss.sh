#!/usr/bin/env bash
# idle-rss.sh — what one idle connection costs a server: each server's RSS
# (VmRSS from /proc) once N connections are open and idle, minus its RSS
# before, over N. echod on io_uring and epoll against gnet from
# bench/peers, one after another, ROUNDS
# rounds, medians. Every process it starts is stopped by its PID.
#
#   scripts/idle-rss.sh                 # N=10000, ROUNDS=3, one loop
#   N=2000 ROUNDS=1 scripts/idle-rss.sh
#   LOOPS=16 SERVERS="echod-epoll gnet" scripts/idle-rss.sh
#                                       # 16 event loops each; a subset
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1-} == -h || ${1-} == --help ]]; then
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
fi
[[ $# -eq 0 ]] || { echo "idle-rss.sh: unknown argument $1 (try --help)" >&2; exit 2; }
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
LOOPS=${LOOPS:-1}
SERVERS=${SERVERS:-"echod-uring echod-epoll gnet"}
for s in $SERVERS; do
	case $s in
	echod-uring | echod-epoll | gnet) ;;
	*) echo "idle-rss: unknown server $s" >&2; exit 2 ;;
	esac
done
bin=$(mktemp -d)
# live holds the PIDs of our children not yet reaped, in this shell (not in
# a subshell, where they would be lost); a PID leaves it once waited for, so
# the EXIT trap can never name someone else's process.
declare -A live=()
cleanup() {
	local p
	for p in "${!live[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
go build -o "$bin/echod" ./cmd/echod
go build -o "$bin/idleconns" ./bench/idleconns
(cd bench/peers && go build -o "$bin/gnet" ./gnet)
ulimit -n $((N + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status" 2>/dev/null || true; }
# running PID: the process exists and is not a zombie.
running() {
	local st
	st=$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}
# reap PID: stop (if still running) and wait for one of our children.
reap() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	unset "live[$1]"
}

# measure NAME CMD...: sets per_conn to the bytes per idle connection, or
# says why not and fails. Called directly, not in $(...), so that the PIDs
# it records stay in this shell for the EXIT trap.
measure() {
	local name=$1
	shift
	per_conn=
	"$@" >"$bin/$name.out" 2>&1 &
	local pid=$! port="" before after cpid wfd fifo=$bin/$name.in i
	live[$pid]=1
	for _ in $(seq 100); do
		port=$(grep -o '127\.0\.0\.1:[1-9][0-9]*' "$bin/$name.out" | head -1 | cut -d: -f2 || true)
		[[ -n $port ]] && break
		running "$pid" || break
		sleep 0.1
	done
	if [[ -z $port ]]; then
		echo "idle-rss: $name did not say its port:" >&2
		cat "$bin/$name.out" >&2
		reap "$pid"
		return 1
	fi
	sleep 0.5 # let it settle before the baseline
	before=$(rss "$pid")
	# idleconns opens N connections, prints ok, and holds them until its
	# stdin (a FIFO, opened here once it has started) reaches its end.
	rm -f "$fifo"
	mkfifo "$fifo"
	"$bin/idleconns" -addr "127.0.0.1:$port" -n "$N" <"$fifo" >"$bin/$name.client" 2>&1 &
	cpid=$!
	live[$cpid]=1
	exec {wfd}>"$fifo"
	for ((i = 0; i < 6000; i++)); do # 10 min at most
		grep -qx ok "$bin/$name.client" && break
		running "$cpid" || break
		sleep 0.1
	done
	if ! grep -qx ok "$bin/$name.client"; then
		echo "idle-rss: $name: the client did not open its $N connections:" >&2
		head -n 5 "$bin/$name.client" >&2
		exec {wfd}>&-
		reap "$cpid"
		reap "$pid"
		return 1
	fi
	sleep 1 # the server finishes accepting what the kernel queued
	after=$(rss "$pid")
	exec {wfd}>&-
	wait "$cpid" 2>/dev/null || true
	unset "live[$cpid]"
	# A server that died during the measurement has no RSS to read.
	if [[ -z $before || -z $after ]] || ! running "$pid"; then
		echo "idle-rss: $name exited during the measurement (RSS before: ${before:-none}, after: ${after:-none}):" >&2
		tail -n 5 "$bin/$name.out" >&2
		reap "$pid"
		return 1
	fi
	reap "$pid"
	per_conn=$(((after - before) / N))
}

declare -A got=()
failed=0
for round in $(seq "$ROUNDS"); do
	for s in $SERVERS; do
		case $s in
		echod-uring) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend uring --loops "$LOOPS" --max-conns 0) ;;
		echod-epoll) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend epoll --loops "$LOOPS" --max-conns 0) ;;
		gnet) cmd=("$bin/gnet" --addr 127.0.0.1:0 --loops "$LOOPS") ;;
		esac
		if measure "$s" "${cmd[@]}"; then
			got[$s]="${got[$s]-} $per_conn"
			echo "round $round: $s $per_conn B/conn" >&2
		else
			failed=$((failed + 1))
			echo "round $round: $s failed; skipped" >&2
		fi
	done
done
printf '%-20s %12s   (%d idle connections, %d loop(s), median of %d)\n' server "RSS B/conn" "$N" "$LOOPS" "$ROUNDS"
for s in $SERVERS; do
	med=$(tr ' ' '\n' <<<"${got[$s]-}" | grep . | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }' || true)
	n=$(wc -w <<<"${got[$s]-}")
	note=
	((n == ROUNDS)) || note="  ($n of $ROUNDS rounds)"
	printf '%-20s %12s%s\n' "$s" "${med:-failed}" "$note"
done
if ((failed > 0)); then
	echo "idle-rss: $failed measurement(s) failed; see above" >&2
	exit 1
fi
