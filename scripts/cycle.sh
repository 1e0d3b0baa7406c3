#!/usr/bin/env bash
# cycle.sh — one waiter's wake cycle through the reactor against Go's own
# netpoller, in one run: BenchmarkPollCycle and BenchmarkArmCycle, every
# row (epoll, uring, netpoller), COUNT rounds
# taking turns, and each row's median ns/op and its ratio to the
# netpoller's median. vcsw/op (voluntary context switches: OS threads put
# to sleep) barely moves when the machine is busy, so it is printed too.
#
#   scripts/cycle.sh                  # COUNT=5 rounds of 20,000 cycles
#   COUNT=9 CYCLES=50000 scripts/cycle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1-} == -h || ${1-} == --help ]]; then
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
fi
[[ $# -eq 0 ]] || { echo "cycle.sh: unknown argument $1 (try --help)" >&2; exit 2; }
COUNT=${COUNT:-5}
CYCLES=${CYCLES:-20000}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/reactor.test" ./reactor/
"$bin/reactor.test" -test.run '^$' -test.bench 'Benchmark(Poll|Arm)Cycle$' \
	-test.benchtime "${CYCLES}x" -test.count "$COUNT" | tee "$bin/out.txt" >&2
printf "%-38s %10s %8s %9s\n" row ns/op "x netp." vcsw/op
awk '
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	ns[name] = ns[name] " " $3
	for (i = 4; i < NF; i++) if ($(i+1) == "vcsw/op") vc[name] = vc[name] " " $i
}
function median(list,    a, n, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	for (name in ns) { split(name, p, "/"); base[p[1]] = median(ns[p[1] "/netpoller"]) }
	for (name in ns) {
		split(name, p, "/")
		m = median(ns[name])
		printf "%-38s %10.0f %8.2f %9s\n", name, m, m / base[p[1]], (name in vc) ? sprintf("%.2f", median(vc[name])) : "-"
	}
}' "$bin/out.txt" | sort
