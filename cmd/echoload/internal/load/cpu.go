//go:build linux

package load

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat. Linux fixes
// USER_HZ at 100 for user space on every architecture Go supports.
const userHZ = 100

// cpuSample is the CPU time used so far by the server and by this process.
type cpuSample struct {
	ok        bool          // taken
	server    time.Duration // utime+stime of Config.ServerPID, if any
	serverUsr time.Duration // the utime part of server
	serverErr error         // why server is missing
	serverCS  int64         // context switches of the server's threads, voluntary or not
	client    time.Duration // utime+stime of this process
}

func takeCPUSample(pid int) cpuSample {
	s := cpuSample{ok: true}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if pid > 0 {
		s.serverUsr, s.server, s.serverErr = procCPU(pid)
		s.serverCS = procSwitches(pid)
	}
	return s
}

// procSwitches sums the context switches of process pid's live threads
// (a thread that exited takes its count with it; Go servers keep theirs).
func procSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n += atoiOrZero(v)
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				n += atoiOrZero(v)
			}
		}
	}
	return n
}

func atoiOrZero(s string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return v
}

// procCPU reads utime and utime+stime, summed over every thread, of
// process pid.
func procCPU(pid int) (user, total time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server cpu: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads fields 14 (utime) and 15 (stime) of a /proc/PID/stat
// line, and returns utime and their sum. The command name (field 2) is in
// parentheses and may hold spaces or parentheses itself, so fields are
// counted from the last ')'.
func parseStatCPU(stat string) (user, total time.Duration, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("server cpu: no ')' in /proc stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("server cpu: /proc stat line has %d fields after the name, want >= 13", len(f))
	}
	var ticks [2]int64
	for j, s := range f[11:13] {
		if ticks[j], err = strconv.ParseInt(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("server cpu: %w", err)
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return tick(ticks[0]), tick(ticks[0] + ticks[1]), nil
}
