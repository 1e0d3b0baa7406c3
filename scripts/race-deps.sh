#!/usr/bin/env bash
# race-deps.sh: make sure go test -race can run here. The race detector
# needs cgo, and cgo a C compiler: Go from go.dev's tarball brings none,
# and a fresh Debian has none either, so make test would stop at "go:
# -race requires cgo". Installs gcc and libc6-dev through apt where it
# can (root), else says what to install. Silent when all is there.
set -euo pipefail

go=${GO:-go} # the Makefile's $(GO)
cc=$($go env CC)
cc=${cc:-gcc}
have_cc() { command -v "${cc%% *}" >/dev/null 2>&1; }
if ! have_cc; then
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		echo "race-deps.sh: go test -race needs a C compiler ($cc): install one (Debian: apt-get install gcc libc6-dev) and run make test again" >&2
		exit 1
	fi
	echo "race-deps.sh: no C compiler ($cc) for go test -race; installing gcc and libc6-dev (apt-get)" >&2
	(apt-get update -qq && apt-get install -y -qq gcc libc6-dev) >/dev/null 2>&1 || true
	if ! have_cc; then
		echo "race-deps.sh: still no C compiler ($cc) after apt-get install gcc libc6-dev" >&2
		exit 1
	fi
fi
if [[ $($go env CGO_ENABLED) != 1 ]]; then
	echo "race-deps.sh: go test -race needs cgo, and CGO_ENABLED is $($go env CGO_ENABLED) here: unset it, or set it to 1" >&2
	exit 1
fi
