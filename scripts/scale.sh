#!/usr/bin/env bash
# scale.sh — how echo servers scale with their event loops: for each N in
# LOOPS, every server runs with --loops N pinned to N CPUs of its own, and
# one echoload process drives it from other CPUs of its own. Prints, per N
# and server, throughput (and its multiple of the same server's at the
# first N), server CPU µs per message and latency, medians over ROUNDS, and
# writes the table as Markdown under results/scale-<UTC time>/. Meant for a
# machine with several spare cores (on 2 CPUs there is nothing to scale).
#
#   scripts/scale.sh                 # LOOPS="1 2 4", 1000 × 64 B, 3 s each
#   scripts/scale.sh --help          # this text; nothing is built or run
#
# Environment:
#   LOOPS         loop counts to run (default "1 2 4")
#   SERVERS       from "echod-uring echod-uring-locked echod-epoll gnet" (the
#                 default; echod-uring-locked runs --lock-loops) and
#                 "echod-uring-inc stdlib netpoll nbio c-uring c-epoll" (the C
#                 servers have one loop: they run at N=1 only)
#   CELL          CONNSxSIZE (default 1000x64)
#   DURATION, WARMUP, ROUNDS   per cell (default 3s, 1s, 1)
#   SERVER_CPUS   CPUs for the servers, in the order they are taken: N loops
#                 run on the first N (default: the first half of the CPUs
#                 this process may use)
#   CLIENT_CPUS   CPUs for echoload (default: the second half). On a machine
#                 with hyper-threads, give each side one thread per core
#                 (see /sys/devices/system/cpu/cpu*/topology/thread_siblings_list)
#   PREBUILT=DIR  build nothing: run the binaries in DIR, as scripts/compare.sh
#
# A round whose server died, whose echoload failed or whose report has
# errors or no message is left out of the medians and listed under the
# table; a cell with no round left is shown as failed and makes the script
# exit 1 (a server not built here is shown as skipped, as compare.sh does,
# but a run that measured nothing at all exits 1).
#
# Every process this script starts is stopped by its PID on exit.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
for arg in "$@"; do
	case $arg in
	-h | -help | --help | help)
		usage
		exit 0
		;;
	*)
		printf 'scale.sh: unknown argument %q: settings are environment variables; see --help\n' "$arg" >&2
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
LOOPS=${LOOPS:-"1 2 4"}
SERVERS=${SERVERS:-"echod-uring echod-uring-locked echod-epoll gnet"}
CELL=${CELL:-1000x64}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-1}
PREBUILT=${PREBUILT-}
conns=${CELL%x*}
size=${CELL#*x}

say() { printf 'scale: %s\n' "$*" >&2; }
out=$root/results/scale-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out/cells" "$out/logs"

# shellcheck source=scripts/servers.sh
source "$root/scripts/servers.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries ------------------------------------------------------------------
bin=$root/bin/compare
if [[ -n $PREBUILT ]]; then
	bin=$(cd "$PREBUILT" 2>/dev/null && pwd) || {
		echo "scale: PREBUILT=$PREBUILT: no such directory (here or under $root)" >&2
		exit 2
	}
else
	say "building into $bin"
	mkdir -p "$bin"
	go build -o "$bin/echoload" ./cmd/echoload
	go build -o "$bin/echod" ./cmd/echod
	(cd bench/peers && go build -o "$bin/" ./stdlib ./gnet ./netpoll ./nbio)
	if [[ " $SERVERS " == *" c-"* ]]; then
		make_c "$out/logs/build-c.log" echo_uring echo_epoll ||
			say "WARNING: the C servers do not build (needs liburing-dev; log: $out/logs/build-c.log)"
	fi
fi

# --- CPUs ----------------------------------------------------------------------
mapfile -t allowed < <(allowed_cpus)
half=$((${#allowed[@]} / 2))
read -r -a scpus <<<"${SERVER_CPUS:-${allowed[*]:0:half}}"
read -r -a ccpus <<<"${CLIENT_CPUS:-${allowed[*]:half}}"
for n in $LOOPS; do
	if ((n > ${#scpus[@]})); then
		say "LOOPS has $n but SERVER_CPUS has ${#scpus[@]} CPUs (${scpus[*]}); see --help"
		exit 2
	fi
done
((${#ccpus[@]} > 0)) || { say "no CPUs left for echoload; see --help"; exit 2; }
client_list=$(
	IFS=,
	echo "${ccpus[*]}"
)
say "servers on CPUs ${scpus[*]} (N loops on the first N), echoload on CPUs $client_list"

# field FILE NAME: a number from echoload's JSON report.
field() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" "$1" | head -n 1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2) }'; }
# top FILE NAME: a number from the report's top level (two spaces in; the
# config object, four in, has a "messages" of its own).
top() { sed -n "s/^  \"$2\": \([0-9.e+-]*\).*/\1/p" "$1" | head -n 1; }
# round_fault FILE RC SERVER_PID prints why a round is no good (nothing if
# it is): the server died, echoload failed, or its report shows errors or
# no message. Such a round is left out of the medians.
round_fault() {
	local f=$1 rc=$2 spid=$3 msgs errs
	if ! running "$spid"; then
		echo "the server died"
		return
	fi
	if [[ $rc != 0 ]]; then
		echo "echoload exited $rc"
		return
	fi
	msgs=$(top "$f" messages)
	errs=$(top "$f" error_total)
	if [[ -z $msgs || -z $errs ]]; then
		echo "no report"
	elif [[ $errs != 0 ]]; then
		echo "$errs errors"
	elif [[ $msgs == 0 ]]; then
		echo "no message echoed"
	fi
}

# fault["SRV N"]: why that cell may have no result at all (then it is in
# the table as failed, listed in failed, and the script exits 1);
# dropped["SRV N"]: how many of its rounds were left out; notes: one line
# per round left out, printed under the table.
declare -A fault=() dropped=()
notes=() failed=()

for n in $LOOPS; do
	cpu_list=$(
		IFS=,
		echo "${scpus[*]:0:n}"
	)
	declare -A pid_of=() addr_of=()
	for srv in $SERVERS; do
		if [[ $srv == c-* && $n != 1 ]]; then
			say "$srv has one event loop: not run with $n"
			continue
		fi
		if ! server_cmd "$srv" "$n"; then
			fault["$srv $n"]="unknown server"
			continue
		fi
		if [[ ! -x ${cmd[0]} ]]; then
			say "$srv: ${cmd[0]} is missing; skipped"
			fault["$srv $n"]="not built"
			continue
		fi
		log=$out/logs/${srv}_$n.log
		taskset -c "$cpu_list" "${cmd[@]}" >"$log" 2>&1 &
		pid=$!
		live[$pid]=1
		if ! addr=$(bound_addr "$pid" "$log"); then
			say "$srv with $n loops did not start; skipped (log: $log)"
			fault["$srv $n"]="did not start"
			stop_pid "$pid"
			continue
		fi
		pid_of[$srv]=$pid
		addr_of[$srv]=$addr
	done
	for round in $(seq "$ROUNDS"); do
		for srv in $SERVERS; do
			[[ -n ${pid_of[$srv]-} ]] || continue
			f=$out/cells/${srv}_${n}_r$round.json
			taskset -c "$client_list" "$bin/echoload" --addr "${addr_of[$srv]}" --conns "$conns" --size "$size" \
				--duration "$DURATION" --warmup "$WARMUP" --server-pid "${pid_of[$srv]}" --json --quiet \
				>"$f" 2>"${f%.json}.err" &
			cpid=$!
			live[$cpid]=1
			rc=0
			wait "$cpid" || rc=$?
			unset "live[$cpid]"
			why=$(round_fault "$f" "$rc" "${pid_of[$srv]}")
			if [[ -z $why ]]; then
				say "  $n loops, $srv: $(field "$f" msgs_per_sec) msgs/s"
				continue
			fi
			# Kept for a look, under a name the medians do not read.
			mv "$f" "$f.dropped"
			dropped["$srv $n"]=$((${dropped["$srv $n"]-0} + 1))
			if ! running "${pid_of[$srv]}"; then
				src=0
				wait "${pid_of[$srv]}" 2>/dev/null || src=$?
				unset "live[${pid_of[$srv]}]" "pid_of[$srv]"
				why="the server died (exit $src; log: $out/logs/${srv}_$n.log)"
				fault["$srv $n"]="the server died in round $round"
				# Its later rounds cannot run.
				dropped["$srv $n"]=$((${dropped["$srv $n"]} + ROUNDS - round))
			fi
			say "  $n loops, $srv, round $round: $why; round left out (report: $f.dropped)"
			notes+=("$n loops, $srv, round $round: $why")
		done
	done
	for srv in "${!pid_of[@]}"; do stop_pid "${pid_of[$srv]}"; done
	unset pid_of addr_of
done

{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc --all) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)"
	echo "- cell: $conns connections × $size B, echoload --duration $DURATION --warmup $WARMUP on CPUs $client_list; $ROUNDS round(s), median shown"
	echo "- servers: N loops on the first N of CPUs ${scpus[*]}"
	echo "- × N=first: msgs/s over the same server's at the first N"
	echo
	echo "| loops | server | msgs/s | × N=first | server CPU µs/msg | of it user | p99 µs | p99.9 µs | client CPU µs/msg |"
	echo "|--:|---|--:|--:|--:|--:|--:|--:|--:|"
	declare -A first=()
	measured=0 # cells with a result
	for n in $LOOPS; do
		for srv in $SERVERS; do
			[[ $srv != c-* || $n == 1 ]] || continue
			col() { for f in "$out/cells/${srv}_${n}"_r*.json; do field "$f" "$1"; done | median; }
			mps=
			! compgen -G "$out/cells/${srv}_${n}_r*.json" >/dev/null || mps=$(col msgs_per_sec)
			if [[ -z $mps ]]; then
				# No good round: the cell is shown as failed, and the
				# script's exit status says so.
				# A server not built here (a C one without liburing) is
				# skipped, as compare.sh skips it, not failed.
				if [[ ${fault["$srv $n"]-} == "not built" ]]; then
					printf '| %s | %s | skipped: not built | – | – | – | – | – | – |\n' "$n" "$srv"
					continue
				fi
				printf '| %s | %s | failed: %s | – | – | – | – | – | – |\n' "$n" "$srv" \
					"${fault["$srv $n"]:-no good round of $ROUNDS}"
				failed+=("$srv at $n loops")
				continue
			fi
			measured=$((measured + 1))
			name=$srv
			[[ -z ${dropped["$srv $n"]-} ]] ||
				name="$srv (median of $((ROUNDS - ${dropped["$srv $n"]})) of $ROUNDS rounds)"
			[[ -n ${first[$srv]-} ]] || first[$srv]=$mps
			user=$(col server_user_us_per_msg)
			[[ -z $user ]] || user=$(printf '%.2f' "$user")
			printf '| %s | %s | %.0f | %.2f | %.2f | %s | %.0f | %.0f | %.2f |\n' "$n" "$name" "$mps" \
				"$(awk -v a="$mps" -v b="${first[$srv]}" 'BEGIN { print a / b }')" \
				"$(col server_us_per_msg)" "${user:-–}" "$(col p99)" "$(col p99_9)" "$(col client_us_per_msg)"
		done
	done
	if ((${#notes[@]} > 0)); then
		echo
		echo "Rounds left out (the server died, echoload failed, or its report had errors or no message):"
		echo
		printf -- '- %s\n' "${notes[@]}"
	fi
} >"$out/scale.md"
cat "$out/scale.md"
say "results: $out/scale.md"
if ((measured == 0)); then
	say "FAILED: no cell measured (no server built or started; see above)"
	exit 1
fi
if ((${#failed[@]} > 0)); then
	say "FAILED: ${#failed[@]} cell(s) with no good round: $(
		IFS=,
		echo "${failed[*]}"
	)"
	exit 1
fi
