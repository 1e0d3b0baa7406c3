#!/usr/bin/env bash
# bundle.sh — build everything scripts/compare.sh and scripts/scale.sh run
# into one folder, for a benchmark machine that has neither Go nor
# liburing-dev: copy the repository there (or only scripts/ and the
# folder), then run
#
#   PREBUILT=bin/bundle scripts/compare.sh
#   PREBUILT=bin/bundle scripts/scale.sh
#
# The Go programs are stripped (-trimpath -ldflags=-s -w: about 28 MB in
# all); the C io_uring server is linked statically against liburing, so
# the machine needs only a C library. Needs Go, a C compiler and
# liburing-dev here (installed with apt-get where it is missing).
#
#   scripts/bundle.sh            # into bin/bundle
#   OUT=DIR scripts/bundle.sh    # into DIR
set -euo pipefail
case ${1-} in
-h | -help | --help | help)
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
	exit 0
	;;
"") ;;
*)
	printf 'bundle.sh: unknown argument %q; see --help\n' "$1" >&2
	exit 2
	;;
esac
cd "$(dirname "$0")/.."
out=${OUT:-bin/bundle}
mkdir -p "$out"
out=$(cd "$out" && pwd)
flags=(-trimpath -ldflags=-s\ -w)
go build "${flags[@]}" -o "$out/echod" ./cmd/echod
go build "${flags[@]}" -o "$out/echoload" ./cmd/echoload
(cd bench/peers && go build "${flags[@]}" -o "$out/" ./stdlib ./gnet ./netpoll ./nbio ./comparetable)
if ! printf '#include <liburing.h>\n' | "${CC:-cc}" -E -x c - >/dev/null 2>&1; then
	apt-get update -qq && apt-get install -y -qq liburing-dev
fi
"${CC:-cc}" -O2 -Wall -Wextra -Werror -o "$out/echo_uring" bench/c/echo_uring.c -Wl,-Bstatic -luring -Wl,-Bdynamic
# make cannot name a target whose path holds a space: build in a folder
# named relative to bench/c, then move.
ctmp=$(mktemp -d bench/c/.build.XXXXXX)
trap 'rm -rf "$ctmp"' EXIT
make -s -C bench/c OUT="${ctmp#bench/c/}" "${ctmp#bench/c/}/echo_epoll" "${ctmp#bench/c/}/syscount"
mv -f "$ctmp/echo_epoll" "$ctmp/syscount" "$out/"
git rev-parse --short HEAD >"$out/SOURCE" 2>/dev/null || echo unknown >"$out/SOURCE"
du -sh "$out"
