# servers.sh — what scripts/compare.sh and scripts/scale.sh share (and
# scripts/benchbox.sh, for allowed_cpus): the processes they start,
# recorded and stopped by PID, and how each echo server is started and
# found. Sourced, not run; the sourcing script defines say and bin (the
# folder of the binaries) and sets its traps:
#
#   trap cleanup EXIT
#   trap 'exit 130' INT TERM
#
# shellcheck shell=bash

# live holds the PIDs of our children not yet reaped; a PID leaves it only
# once waited for, so it can never name someone else's process.
declare -A live=()

# running PID: the process exists and is not a zombie (a child that exited
# stays one, and kill -0 still works on it, until waited for).
running() {
	local st
	st=$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}

stop_pid() {
	local pid=$1
	if running "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			running "$pid" || break
			sleep 0.1
		done
		if running "$pid"; then
			say "pid $pid ignored SIGTERM for 5s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	unset "live[$pid]"
}

cleanup() {
	local pid
	for pid in "${!live[@]}"; do stop_pid "$pid"; done
	if [[ -n ${make_c_tmp:-} ]]; then rm -rf "$make_c_tmp"; fi
}

# allowed_cpus prints the CPU ids this process may run on (a cgroup or an
# outer taskset may leave, say, 2 and 3 rather than 0 and 1).
allowed_cpus() {
	local list part
	list=$(sed -n 's/^Cpus_allowed_list:\s*//p' /proc/self/status)
	for part in ${list//,/ }; do
		if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
	done
}

# server_cmd NAME LOOPS sets the array cmd to the command that starts
# server NAME with LOOPS event loops (0: its default) on a port the kernel
# picks (port 0): no port is ever guessed, so nothing else on the machine can
# hold it or be hit by mistake. An array, not a printed line, so that a path
# with spaces in it stays one word. Fails, cmd empty, for an unknown NAME.
# shellcheck disable=SC2034 # cmd is the sourcing script's to run
server_cmd() {
	local name=$1 n=$2
	cmd=()
	case $name in
	echod-uring) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend uring --loops "$n") ;;
	echod-uring-poll) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend uring --io poll --loops "$n") ;;
	echod-uring-inc) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend uring --recv-incremental --loops "$n") ;;
	echod-uring-locked) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend uring --lock-loops --kernel-wait=false --loops "$n") ;;
	echod-uring-parked) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend uring --kernel-wait=false --loops "$n") ;;
	echod-epoll-parked) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend epoll --kernel-wait=false --loops "$n") ;;
	echod-epoll) cmd=("$bin/echod" --listen 127.0.0.1:0 --backend epoll --loops "$n") ;;
	stdlib | gnet | netpoll | nbio) cmd=("$bin/$name" --addr 127.0.0.1:0 --loops "$n") ;;
	c-uring) cmd=("$bin/echo_uring" --addr 127.0.0.1:0 --loops "$n") ;;
	c-uring-gather) cmd=("$bin/echo_uring" --gather --addr 127.0.0.1:0 --loops "$n") ;;
	c-epoll) cmd=("$bin/echo_epoll" --addr 127.0.0.1:0 --loops "$n") ;;
	*) say "unknown server $name"; return 1 ;;
	esac
}

# bound_addr PID LOG prints the host:port the server logged as bound once its
# startup line is there (deadline 15 s), or fails if it dies first. echod's
# line is JSON ("addr":["127.0.0.1:PORT"]); the peers' and the C servers'
# reads "NAME: listening on tcp:127.0.0.1:PORT ...".
bound_addr() {
	local pid=$1 log=$2 addr
	for _ in $(seq 150); do
		addr=$(sed -n -e 's/.*"msg":"listening".*"addr":\["\([^"]*\)".*/\1/p' \
			-e 's/.*: listening on tcp:\([^ ]*\) .*/\1/p' "$log" | head -n 1)
		if [[ -n $addr ]]; then
			echo "$addr"
			return 0
		fi
		running "$pid" || return 1
		sleep 0.1
	done
	return 1
}

# make_c LOG PROG... builds bench/c's PROGs into $bin. make cannot name a
# target whose path holds a space, so they are built in a folder of their
# own named relative to bench/c (no path above it in the name, wherever
# the clone or TMPDIR is) and moved; the log gets the compiler's output.
make_c() {
	local log=$1 tmp rc=0 prog
	shift
	tmp=$(mktemp -d bench/c/.build.XXXXXX) || return 1
	make_c_tmp=$tmp # cleanup's, should a signal end the build
	local rel=${tmp#bench/c/} targets=()
	for prog in "$@"; do targets+=("$rel/$prog"); done
	if make -s -C bench/c OUT="$rel" "${targets[@]}" >"$log" 2>&1; then
		for prog in "$@"; do mv -f "$tmp/$prog" "$bin/$prog" || rc=1; done
	else
		rc=1
	fi
	rm -rf "$tmp"
	make_c_tmp=
	return "$rc"
}
