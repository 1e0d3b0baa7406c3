#!/usr/bin/env bash
# http-bench.sh — net/http serving a small response (14 bytes) on the
# reactor's NetListen (epoll and io_uring backends) vs on net.Listen, under
# wrk, in one run. Prints each figure's median over the rounds and its
# ratio to the standard library. A round in which wrk reports socket errors
# or non-2xx responses is left out of the medians (and listed); a server
# with no round left makes the script exit 1.
#
#   scripts/http-bench.sh                  # 3 rounds, 10 s each, 50 conns (~2.5 min)
#   ROUNDS=5 DURATION=5s scripts/http-bench.sh
#
# Environment:
#   ROUNDS     rounds; the servers take turns within each (default 3)
#   DURATION   measured wrk run per server and round (default 10s)
#   WARMUP     unmeasured wrk run before it (default 2s)
#   CONNS      wrk connections (default 50), one wrk thread
#   MODES      servers, in table order (default "std reactor-epoll reactor-uring")
#   PIN=0      do not pin (by default the server runs on the first CPU this
#              process may use and wrk on the second: taskset)
#
# Server CPU per request is the server's utime+stime (/proc/PID/stat) over
# the measured run divided by the requests wrk completed in it. wrk is
# installed with apt-get when missing. Every process this script starts is
# stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
MODES=${MODES:-"std reactor-epoll reactor-uring"}
PIN=${PIN:-1}

say() { printf 'http-bench: %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null; then
	say "installing wrk"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null || PIN=0

mkdir -p "$root/bin"
go build -o "$root/bin/httpserve" ./bench/httpserve

srv_cpu="" wrk_cpu=""
if [[ $PIN == 1 ]]; then
	mapfile -t cpus < <(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' |
		awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else print $1 }')
	if ((${#cpus[@]} >= 2)); then
		srv_cpu=${cpus[0]} wrk_cpu=${cpus[1]}
	else
		PIN=0
	fi
fi
pin() { # pin CPU CMD...: run CMD on CPU when pinning
	local cpu=$1
	shift
	if [[ $PIN == 1 ]]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

# live holds the PIDs of our servers not yet reaped; a PID leaves it once
# waited for, so the EXIT trap can never name someone else's process.
declare -A live=()
work=
cleanup() {
	local p
	for p in "${!live[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[[ -z $work ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

clk=$(getconf CLK_TCK)
work=$(mktemp -d)
# ticks PID: utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the command name's closing parenthesis).
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# alive PID: the process runs. A dead child bash has not yet reaped is a
# zombie and counts as dead; one it has reaped has no /proc entry, unless
# its PID was reused meanwhile (seconds of churn at least: not guarded).
alive() {
	local st
	st=$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}

# run MODE ROUND: one server, one measured wrk run; appends
# "MODE rps cpu_us_per_req p99_ms" to $work/results.
run() {
	local mode=$1 round=$2 log=$work/$1.$2.log args
	case $mode in
	std) args=(-mode std) ;;
	reactor-epoll) args=(-mode reactor -backend epoll) ;;
	reactor-uring) args=(-mode reactor -backend uring) ;;
	*) say "unknown mode $mode"; exit 2 ;;
	esac
	# Started directly (not through pin, a function: its subshell would
	# be $!), so that $! is the server itself (taskset execs it).
	if [[ $PIN == 1 ]]; then
		taskset -c "$srv_cpu" "$root/bin/httpserve" "${args[@]}" >"$log" 2>&1 &
	else
		"$root/bin/httpserve" "${args[@]}" >"$log" 2>&1 &
	fi
	local pid=$!
	live[$pid]=1
	local addr="" i
	for ((i = 0; i < 100; i++)); do
		addr=$(sed -n 's/^listening on //p' "$log")
		[[ -n $addr ]] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z $addr ]]; then
		say "$mode did not start:"
		cat "$log" >&2
		exit 1
	fi
	local url=http://$addr/
	pin "$wrk_cpu" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null || true
	local t0=0 t1=0 out=
	if alive "$pid" && t0=$(ticks "$pid"); then
		out=$(pin "$wrk_cpu" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url") || true
	fi
	if ! alive "$pid"; then
		# Its CPU and its answers are no longer one server's run: the
		# round is left out, and the table says so.
		wait "$pid" 2>/dev/null || true
		unset "live[$pid]"
		say "round $round $mode: left out: the server died during the run (log: $log)"
		echo "$mode round $round: the server died during the run" >>"$work/dropped"
		return 0
	fi
	t1=$(ticks "$pid")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	unset "live[$pid]"
	echo "$out" >"$work/$mode.$round.wrk"
	local reqs rps p99 errs
	reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
	p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } print v }' <<<"$out")
	errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
	if [[ -n $errs || -z $rps || ${reqs:-0} == 0 ]]; then
		# Errors make the figures a different workload's: the round is left
		# out of the medians.
		say "round $round $mode: left out: ${errs:-no requests completed}"
		echo "$mode round $round: ${errs:-no requests completed}" | tr '\n' ' ' >>"$work/dropped"
		echo >>"$work/dropped"
		return 0
	fi
	local cpu
	cpu=$(awk -v d=$((t1 - t0)) -v clk="$clk" -v n="$reqs" 'BEGIN { printf "%.2f", d / clk / n * 1e6 }')
	say "round $round $mode: $rps req/s, $cpu us CPU/req, p99 $p99 ms ($(head -1 "$log" | grep -v '^listening' || true))"
	echo "$mode $rps $cpu $p99" >>"$work/results"
}

say "$ROUNDS rounds x $DURATION, $CONNS connections, modes: $MODES, pinned: $([[ $PIN == 1 ]] && echo "server CPU $srv_cpu, wrk CPU $wrk_cpu" || echo no)"
for ((round = 1; round <= ROUNDS; round++)); do
	for mode in $MODES; do
		run "$mode" "$round"
	done
done

touch "$work/results" "$work/dropped"
# median MODE COLUMN: over the rounds kept; nothing when there is none.
median() {
	awk -v m="$1" -v c="$2" '$1 == m { print $c }' "$work/results" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# ratio A B: A / B, or – where either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f", a / b }'; }
base_rps=$(median std 2) base_cpu=$(median std 3)
failed=()
printf '\n%-14s %12s %10s %14s %10s %10s\n' server "req/s" "x std" "CPU us/req" "x std" "p99 ms"
for mode in $MODES; do
	rps=$(median "$mode" 2) cpu=$(median "$mode" 3) p99=$(median "$mode" 4)
	kept=$(awk -v m="$mode" '$1 == m' "$work/results" | wc -l)
	if ((kept == 0)); then
		printf '%-14s %12s\n' "$mode" "failed: no round without errors"
		failed+=("$mode")
		continue
	fi
	note=
	((kept == ROUNDS)) || note=" ($kept of $ROUNDS rounds)"
	printf '%-14s %12.0f %10s %14.2f %10s %10s%s\n' "$mode" "$rps" "$(ratio "$rps" "$base_rps")" \
		"$cpu" "$(ratio "$cpu" "$base_cpu")" "$p99" "$note"
done
echo "(medians of the rounds without errors, of $ROUNDS; x std: ratio to net/http on net.Listen in this run)"
if [[ -s $work/dropped ]]; then
	echo "rounds left out (wrk reported errors, or the server died):"
	sed 's/^/  /' "$work/dropped"
fi
if ((${#failed[@]} > 0)); then
	say "FAILED: no round without errors for: ${failed[*]}"
	exit 1
fi
