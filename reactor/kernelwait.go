//go:build linux

package reactor

import (
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runInKernel serves until the reactor closes, waiting for the poller in
// the kernel on the loop's own thread (Config.KernelWait) rather than
// parking in Go's netpoller.
//
// While messages keep coming, the loop holds its P across its waits
// (poller.Poller.Hold): the ordinary system-call entry lets sysmon hand
// the P of a thread asleep in a system call to another thread and makes
// this one win it back when the call returns, two thread wake-ups a
// message for a loop that waits after every message. A held wait needs no
// timeout of its own (arming a kernel timer per wait costs, in a VM, about
// what the handover does): the runtime preempts a goroutine that has held
// its P for 10 ms with a signal, which ends the wait. A held wait that
// ends with nothing to do (that signal) means the loop is idle: the next
// wait gives the P up, to the rest of the program, until something
// arrives.
//
// Timers: a held wait is bounded by the next timer only when that is less
// than heldSlack away; a later timer runs at the turn after the signal at
// the latest, which is within the 1/64 of its duration that timers may be
// late. Where the runtime does not preempt by signal (preemptsBySignal)
// every held wait is bounded by heldBound instead, which bounds how long a
// stop-the-world or a goroutine queued on the loop's P waits for it. Any
// other signal (SIGPROF while profiling) also ends a held wait, and costs
// only an idle turn.
//
// A loop holds its P only while the reactor has no more loops than Ps
// (mayHold): loops that shared Ps would wait for each other's preemption.
//
// Batches: a busy loop that served n Events (asksGather) and queued
// requests hands them to the kernel in an enter that also waits, up to
// gatherFor and never past its next timer, until n completions are posted
// (poller.Poller.Gather; those of the requests it submits that complete at
// once count), instead of one that returns with whatever one message's
// time brought. Under load a loop then makes one enter and one wake-up per
// batch rather than about one per message; a loop that serves one message
// at a time never waits for a second. echod, one loop, against the same
// build without it in alternating pinned rounds (3 each, medians,
// 2026-11-30): 0.87× the server CPU a message at 1,000 connections × 64 B
// (0.28 io_uring_enter a message against 0.86), 0.89× at 100, 0.90× at 50
// × 16 KiB, 0.98× at 1 × 64 B. That enter is the turn's only one: the
// look before it leaves the kernel's deferred work to it, and what the
// kernel flags after it waits for the next turn's (at 1,000 × 64 B, 1.03
// enters a turn where looking again for it made 2.4, and 0.08 system
// calls a message against 0.24). Waiting for a second completion after
// every single message (n = 1) measured 1.05× at 1 × 64 B: arming the
// wait's kernel timer costs more in this VM than the enter it saves.
//
//	who     step                                  why this order
//	------  ------------------------------------  -------------------------
//	loop    sleeping.Store(true)                  a waker that finds it set
//	        if inbox empty and not closing: wait  writes the eventfd, which
//	waker   push; if sleeping.CAS(true, false):   ends this wait or the next
//	        the poller's Wake                     at once: never slept
//	loop    sleeping.Store(false), turn           through
func (l *loop) runInKernel() {
	held, idle, signals := false, false, false
	var timeout time.Duration
	for {
		n := l.wait(timeout)
		idle = stillIdle(idle, held, timeout, n, l.in.n.Load())
		l.in.sleeping.Store(false)
		l.handle(n)
		if l.turn() {
			return
		}
		timeout = 0
		if n == len(l.evs) || l.p.Queued() {
			// Asked here, where a loop that never sleeps still asks.
			if asksGather(n, len(l.evs), held, l.mayHold) {
				l.p.Gather(n, l.gatherWindow())
			}
			continue // see parkedTurn
		}
		l.leaveUser()
		l.in.sleeping.Store(true)
		if l.in.n.Load() != 0 || l.r.closing.Load() {
			l.in.sleeping.Store(false) // no waker need write the eventfd
			continue
		}
		until := time.Duration(-1)
		if next := l.nextTimer(); next >= 0 {
			until = max(time.Duration(next-nanotime()), 0)
		}
		// Whether to hold the P is decided here, just before the wait
		// whose timeout depends on it. Whether holding is safe is looked
		// at only when a loop starts to hold (about once per preemption
		// while busy), since a program may change GOMAXPROCS or ignore
		// SIGURG at any time; a loop that then should not hold stops at
		// its next idle wait.
		want := !idle
		if want && !held && !l.mayHold() {
			want = false
		}
		if want != held {
			held = want
			l.p.Hold(held)
			signals = held && godebugPreempts && !signal.Ignored(syscall.SIGURG)
		}
		timeout = kernelTimeout(held, signals, until)
	}
}

// asksGather reports whether a KernelWait loop that served n Events, of
// a buffer of size, asks its next look to gather a batch of n: where n is
// a batch (n > 1; a loop serving one message at a time never waits for a
// second), not a full buffer (more is waiting already), and the loop
// holds its P or may (a gathering wait keeps it: loops sharing Ps would
// wait for each other). mayHold is asked last, as it costs a lock.
func asksGather(n, size int, held bool, mayHold func() bool) bool {
	return n > 1 && n < size && (held || mayHold())
}

// gatherWindow is how long a busy loop's next look may wait for a batch
// (poller.Poller.Gather): see gatherWithin.
func (l *loop) gatherWindow() time.Duration {
	until := time.Duration(-1)
	if next := l.nextTimer(); next >= 0 {
		until = max(time.Duration(next-nanotime()), 0) // a timer past is due now
	}
	return gatherWithin(until)
}

// gatherWithin is the window of a gathering look, given until, how far
// the loop's next timer is (-1: none): gatherFor, and not past the timer
// (a timer due already gives no window, and the poller no wait).
func gatherWithin(until time.Duration) time.Duration {
	if until >= 0 {
		return min(until, gatherFor)
	}
	return gatherFor
}

// gatherFor bounds how long a busy KernelWait loop waits to gather a batch
// (see runInKernel). Under load the batch comes well before it; where it
// does not, the loop has served what came and a message waited gatherFor
// at most. 50, 100 and 200 µs measured alike at 100 and 1,000 connections.
const gatherFor = 50 * time.Microsecond

// stillIdle is whether a KernelWait loop is idle after a wait (see
// runInKernel): a wait that brought n Events says no; a held, sleeping wait
// that ended with nothing and no command queued says yes (the runtime's
// signal, or a timer: no work came in the meantime); any other says what
// was said before.
func stillIdle(idle, held bool, timeout time.Duration, n int, queued int32) bool {
	switch {
	case n > 0:
		return false
	case held && timeout != 0 && queued == 0:
		return true
	}
	return idle
}

// kernelTimeout is the timeout of a KernelWait loop's next wait, given
// until, how far the next timer is (-1: none): a wait that gives the P up
// waits for its timer; a held one for a timer heldSlack away at most, else
// without a timeout (the runtime's signal ends it); where the runtime does
// not signal, heldBound at most.
func kernelTimeout(held, signals bool, until time.Duration) time.Duration {
	switch {
	case !held:
		return until
	case !signals && (until < 0 || until > heldBound):
		return heldBound
	case signals && until > heldSlack:
		return -1
	}
	return until
}

// heldSlack is the farthest timer a held wait is bounded by (see
// runInKernel). The runtime preempts a goroutine that holds its P within
// about 20 ms (sysmon looks every 10 ms at most and preempts after 10 ms),
// and a timer farther away than heldSlack was set for at least that long,
// so 20 ms late is within its 1/64.
const heldSlack = 64 * 20 * time.Millisecond

// heldBound bounds every held wait where the runtime does not preempt by
// signal (see runInKernel).
const heldBound = time.Millisecond

// godebugPreempts is whether GODEBUG, as the program started with it, lets
// the runtime preempt by signal: it read its settings from there, and a
// later os.Setenv changes nothing in it. Read once, before main runs;
// never written.
var godebugPreempts = preemptsBySignal(os.Getenv("GODEBUG"))

// mayHold reports whether a busy loop may hold its P across its waits: not
// where the reactor has more loops than the program has Ps, since a held P
// is taken back only by preemption (10-20 ms), and loops sharing Ps would
// wait that long for each other (echod with 4 loops on GOMAXPROCS 2 had a
// p99.9 of 20 ms against 3.4 parked).
func (l *loop) mayHold() bool {
	return len(l.r.loops) <= runtime.GOMAXPROCS(0)
}

// preemptsBySignal reports whether a GODEBUG list leaves the runtime
// preempting by SIGURG: not with a non-zero asyncpreemptoff, or with
// gccheckmark, which implies it. (A program that ignores SIGURG, through
// signal.Ignore, stops it too: runInKernel asks.) Where the runtime does
// not, held waits are bounded by heldBound.
func preemptsBySignal(godebug string) bool {
	return !godebugNonZero(godebug, "asyncpreemptoff") && !godebugNonZero(godebug, "gccheckmark")
}

// godebugNonZero reports whether the last key= setting in a GODEBUG list
// that parses is a non-zero integer, as the runtime reads its own
// settings: one that does not parse leaves the one before it standing.
func godebugNonZero(list, key string) bool {
	on := false
	for _, kv := range strings.Split(list, ",") {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				on = n != 0
			}
		}
	}
	return on
}
