#!/usr/bin/env bash
# benchbox.sh — the project's whole measurement on a many-core benchmark
# machine, in one go and under 10 minutes (350 + 70 + 120 s at most): the make compare matrix on
# quiet CPUs (server on one core, echoload on another), the 1,000 × 64 B
# cell with echoload on three cores (a server that falls behind), and loop
# scaling with and without --lock-loops. Each step runs under its own time
# limit, so a slow machine loses the tail of the list, not the whole run.
# One CPU per physical core is used, CPU 0 never (interrupts and
# housekeeping land there). Output: a log and every table, under RESULTS
# (default results/benchbox-<UTC time>), plus results.tgz of the results/
# folder where OUT is set (a device run's $OUT).
#
#   PREBUILT=bin/bundle scripts/benchbox.sh   # binaries from make bundle
#   scripts/benchbox.sh                       # builds them (needs Go)
#   scripts/benchbox.sh --help                # this text; nothing is run
#
# Environment:
#   PREBUILT=DIR  as scripts/compare.sh
#   STEPS         which steps, in order (default "compare behind scale")
#   ROUNDS        compare's rounds (default 3); DURATION, WARMUP per cell
#                 (default 2s, 1s)
#   RESULTS       where the log goes (see above)
#   USE_CPU0=1    use CPU 0 too (a small machine, or trying the script)
#
# Cores counted without CPU 0: compare needs 2, behind and scale 4 (scale
# runs 2 loops then; 4 loops from 8 cores, 8 from 16).
set -uo pipefail
case ${1-} in
-h | -help | --help | help)
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	exit 0
	;;
"") ;;
*)
	printf 'benchbox.sh: unknown argument %q; see --help\n' "$1" >&2
	exit 2
	;;
esac
cd "$(dirname "$0")/.."
STEPS=${STEPS:-compare behind scale}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-1s}
RESULTS=${RESULTS:-results/benchbox-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/log.txt") 2>&1

echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc --all) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)"
if [[ -n ${PREBUILT-} && -f $PREBUILT/SOURCE ]]; then
	echo "- source: $(cat "$PREBUILT/SOURCE")"
else
	echo "- source: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
fi
for t in taskset awk sed timeout; do
	command -v "$t" >/dev/null || echo "- missing: $t"
done
# perf's tracepoint (and bench/c/syscount's) needs tracefs mounted.
if [[ ! -e /sys/kernel/tracing/events/raw_syscalls && -d /sys/kernel/tracing ]]; then
	mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "- tracefs not mounted: no system call counts"
fi

# One CPU per physical core (the first thread of each), of those this
# process may use, in order; CPU 0 left out unless USE_CPU0=1.
say() { echo "benchbox: $*" >&2; }
# shellcheck source=scripts/servers.sh
. scripts/servers.sh
cores=()
while read -r c; do
	[[ $c == 0 && ${USE_CPU0-} != 1 ]] && continue
	sib=$(cat "/sys/devices/system/cpu/cpu$c/topology/thread_siblings_list" 2>/dev/null || echo "$c")
	[[ ${sib%%[,-]*} == "$c" ]] && cores+=("$c")
done < <(allowed_cpus)
echo "- cores used (one thread each$([[ ${USE_CPU0-} == 1 ]] || echo ', CPU 0 left out')): ${cores[*]}"
n=${#cores[@]}
join() {
	local IFS=$1
	shift
	echo "$*"
}

for step in $STEPS; do
	t0=$SECONDS
	case $step in
	compare)
		((n >= 2)) || { echo "=== compare: needs 2 cores, found $n"; continue; }
		echo "=== compare: server on CPU ${cores[0]}, echoload on ${cores[1]}"
		timeout 350 env ROUNDS="$ROUNDS" DURATION="$DURATION" WARMUP="$WARMUP" CPUS="${cores[0]} ${cores[1]}" \
			SERVERS="echod-uring echod-epoll c-uring c-epoll stdlib gnet netpoll nbio" scripts/compare.sh
		;;
	behind)
		((n >= 4)) || { echo "=== behind: needs 4 cores, found $n"; continue; }
		echo "=== behind: 1,000 × 64 B, server on CPU ${cores[0]}, echoload on $(join , "${cores[@]:1:3}")"
		timeout 70 env ROUNDS="$ROUNDS" DURATION="$DURATION" WARMUP="$WARMUP" CPUS="${cores[0]} $(join , "${cores[@]:1:3}")" \
			CELLS=1000x64 SERVERS="echod-uring c-uring gnet nbio" scripts/compare.sh
		;;
	scale)
		if ((n >= 16)); then
			half=8 loops="1 2 4 8"
		elif ((n >= 8)); then
			half=4 loops="1 2 4"
		elif ((n >= 4)); then
			half=2 loops="1 2"
		else
			echo "=== scale: needs 4 cores, found $n"
			continue
		fi
		echo "=== scale: loops $loops on CPUs ${cores[*]:0:half}, echoload on ${cores[*]:half:half}"
		timeout 120 env LOOPS="$loops" SERVER_CPUS="${cores[*]:0:half}" CLIENT_CPUS="${cores[*]:half:half}" \
			DURATION="$DURATION" WARMUP="$WARMUP" SERVERS="echod-uring echod-uring-locked echod-epoll gnet" scripts/scale.sh
		;;
	*)
		echo "=== $step: unknown step (compare, behind, scale)"
		;;
	esac
	rc=$?
	((rc == 124)) && echo "=== $step: stopped at its time limit"
	echo "=== $step: $((SECONDS - t0)) s"
done
echo "- done: $(date -u '+%H:%M:%S UTC')"
if [[ -n ${OUT-} && -d ${OUT-} ]]; then
	tar czf "$OUT/results.tgz" results
fi
