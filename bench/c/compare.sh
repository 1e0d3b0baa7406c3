#!/usr/bin/env bash
# compare.sh: ring/'s Go benchmarks against the liburing C peer, measured
# alternately in the same run so machine noise hits both alike. Prints, per
# case, the median over ROUNDS rounds of each side and the ratio Go/C
# (the issue's goal for the batched NOP loop: <= 1.3).
#
#   bench/c/compare.sh            # ROUNDS=5 NOPS=1000000 BENCHTIME=300ms
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

# Normalise both outputs to "case wall cpu" lines, e.g.
# "nop default/batch=32/submit 52.1 44.0" and "poll-cycle coop 1180 1100".
awk '/ns\// {
		split($0, p, ": "); n = split(p[2], v, " ")
		for (i = 1; i < n; i++) {
			if (v[i+1] ~ /^ns\//) w = v[i]
			if (v[i+1] ~ /^cpu-ns\//) c = v[i]
		}
		print p[1], w, c
	}' "$tmp/c.txt" >"$tmp/c.norm"
awk '/^Benchmark(Nop|PollCycle)\// {
		name = $1; kind = ($1 ~ /^BenchmarkNop/) ? "nop" : "poll-cycle"
		sub(/^Benchmark(Nop|PollCycle)\//, "", name); sub(/-[0-9]+$/, "", name)
		w = ""; c = ""
		for (i = 2; i < NF; i++) {
			if ($(i+1) == "ns/nop" || (kind == "poll-cycle" && $(i+1) == "ns/op")) w = $i
			if ($(i+1) ~ /^cpu-ns\//) c = $i
		}
		print kind " " name, w, c
	}' "$tmp/go.txt" >"$tmp/go.norm"

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2) }'; }
ratio() { [[ -n $1 && -n $2 ]] && awk -v g="$1" -v c="$2" 'BEGIN { printf "%.2f", g / c }' || echo -; }
echo "median of $ROUNDS rounds; wall = ns per op, cpu = the benchmark thread's CPU ns per op"
printf '%-44s %9s %9s %6s %9s %9s %6s\n' case "go wall" "c wall" go/c "go cpu" "c cpu" go/c
cut -d' ' -f1,2 "$tmp/go.norm" "$tmp/c.norm" | sort -u | while read -r kind name; do
	col() { awk -v k="$kind $name" -v f="$2" '$1 " " $2 == k { print $f }' "$1" | median; }
	gw=$(col "$tmp/go.norm" 3); cw=$(col "$tmp/c.norm" 3)
	gc=$(col "$tmp/go.norm" 4); cc=$(col "$tmp/c.norm" 4)
	printf '%-44s %9s %9s %6s %9s %9s %6s\n' "$kind $name" "${gw:--}" "${cw:--}" "$(ratio "$gw" "$cw")" \
		"${gc:--}" "${cc:--}" "$(ratio "$gc" "$cc")"
done
