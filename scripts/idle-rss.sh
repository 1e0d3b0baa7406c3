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
bin=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$bin"
}
trap cleanup EXIT
go build -o "$bin/echod" ./cmd/echod
go build -o "$bin/idleconns" ./bench/idleconns
(cd bench/peers && go build -o "$bin/gnet" ./gnet)
ulimit -n $((N + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# measure NAME CMD...: prints bytes per idle connection.
measure() {
	local name=$1; shift
	"$@" >"$bin/$name.out" 2>&1 &
	local pid=$! port=""
	pids+=("$pid")
	for _ in $(seq 100); do
		port=$(grep -o '127\.0\.0\.1:[1-9][0-9]*' "$bin/$name.out" | head -1 | cut -d: -f2 || true)
		[[ -n $port ]] && break
		sleep 0.1
	done
	[[ -n $port ]] || { echo "idle-rss: $name did not say its port" >&2; cat "$bin/$name.out" >&2; return 1; }
	sleep 0.5 # let it settle before the baseline
	local before; before=$(rss "$pid")
	coproc CLIENT { "$bin/idleconns" -addr "127.0.0.1:$port" -n "$N"; }
	local cpid=$CLIENT_PID
	pids+=("$cpid")
	read -r line <&"${CLIENT[0]}"
	[[ $line == ok ]] || { echo "idle-rss: client said $line" >&2; return 1; }
	sleep 1 # the server finishes accepting what the kernel queued
	local after; after=$(rss "$pid")
	exec {CLIENT[1]}>&-
	wait "$cpid" 2>/dev/null || true
	kill "$pid"; wait "$pid" 2>/dev/null || true
	echo $(((after - before) / N))
}

declare -A got
for round in $(seq "$ROUNDS"); do
	for s in $SERVERS; do
		case $s in
		echod-uring) v=$(measure "$s" "$bin/echod" --listen 127.0.0.1:0 --backend uring --loops "$LOOPS" --max-conns 0) ;;
		echod-epoll) v=$(measure "$s" "$bin/echod" --listen 127.0.0.1:0 --backend epoll --loops "$LOOPS" --max-conns 0) ;;
		gnet) v=$(measure "$s" "$bin/gnet" --addr 127.0.0.1:0 --loops "$LOOPS") ;;
		*) echo "idle-rss: unknown server $s" >&2; exit 2 ;;
		esac
		got[$s]="${got[$s]-} $v"
		echo "round $round: $s $v B/conn" >&2
	done
done
printf '%-20s %12s   (%d idle connections, %d loop(s), median of %d)\n' server "RSS B/conn" "$N" "$LOOPS" "$ROUNDS"
for s in $SERVERS; do
	med=$(tr ' ' '\n' <<<"${got[$s]}" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
	printf '%-20s %12s\n' "$s" "$med"
done
