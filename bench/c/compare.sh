#!/usr/bin/env bash
# compare.sh: ring/'s Go benchmarks against the liburing C peer, measured
# alternately in the same run so machine noise hits both alike. Prints, per
# case, the median over ROUNDS rounds of each side and the ratio Go/C
# (the issue's goal for the batched NOP loop: <= 1.3).
#
#   bench/c/compare.sh            # ROUNDS=5 NOPS=1000000 BENCHTIME=1000000x
#
# Needs liburing-dev (apt-get install -y liburing-dev) and Go.
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-5}
NOPS=${NOPS:-1000000}
BENCHTIME=${BENCHTIME:-300ms}

make -s nop_bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/ring.test" ../../ring/

for ((i = 0; i < ROUNDS; i++)); do
	./nop_bench "$NOPS" >>"$tmp/c.txt"
	"$tmp/ring.test" -test.run '^$' -test.bench '^Benchmark(Nop|PollCycle)$' \
		-test.benchtime "$BENCHTIME" >>"$tmp/go.txt"
done

# Normalise both outputs to "case value" lines, e.g.
# "nop default/batch=32/submit 52.1" and "poll-cycle coop 1180".
awk -F': ' '/ns\// { split($2, v, " "); print $1, v[1] }' "$tmp/c.txt" >"$tmp/c.norm"
awk '/^BenchmarkNop\// {
		name = $1; sub(/^BenchmarkNop\//, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i+1) == "ns/nop") print "nop " name, $i
	}
	/^BenchmarkPollCycle\// {
		name = $1; sub(/^BenchmarkPollCycle\//, "", name); sub(/-[0-9]+$/, "", name)
		print "poll-cycle " name, $3
	}' "$tmp/go.txt" >"$tmp/go.norm"

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2) }'; }
printf '%-42s %10s %10s %8s\n' case "go ns" "c ns" go/c
cut -d' ' -f1,2 "$tmp/go.norm" "$tmp/c.norm" | sort -u | while read -r kind name; do
	g=$(awk -v k="$kind $name" '$1 " " $2 == k { print $3 }' "$tmp/go.norm" | median)
	c=$(awk -v k="$kind $name" '$1 " " $2 == k { print $3 }' "$tmp/c.norm" | median)
	r=$( [[ -n $g && -n $c ]] && awk -v g="$g" -v c="$c" 'BEGIN { printf "%.2f", g / c }' || echo -)
	printf '%-42s %10s %10s %8s\n' "$kind $name" "${g:--}" "${c:--}" "$r"
done
