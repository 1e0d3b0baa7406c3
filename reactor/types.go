package reactor

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Events is a set of readiness conditions, with poll(2)'s bit values so that
// a mask passes through io_uring's POLL_ADD and epoll unchanged.
type Events uint32

// The readiness conditions a request can wait for or report. Err and Hup are
// always reported when they happen, whether asked for or not. The values
// are Linux's POLL* bits, spelled out so that this file builds on every
// GOOS; reactor.go checks them against golang.org/x/sys/unix at compile
// time.
const (
	In    Events = 0x1
	Pri   Events = 0x2
	Out   Events = 0x4
	Err   Events = 0x8
	Hup   Events = 0x10
	RdHup Events = 0x2000
)

// String writes the set as names joined by '|', e.g. "In|Out".
func (e Events) String() string {
	if e == 0 {
		return "0"
	}
	var b strings.Builder
	for _, n := range []struct {
		e    Events
		name string
	}{{In, "In"}, {Pri, "Pri"}, {Out, "Out"}, {Err, "Err"}, {Hup, "Hup"}, {RdHup, "RdHup"}} {
		if e&n.e != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n.name)
			e &^= n.e
		}
	}
	if e != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x")
		b.WriteString(strconv.FormatUint(uint64(e), 16))
	}
	return b.String()
}

// Backend names the kernel interface that serves one-shot polls.
type Backend string

// The backends. BackendAuto is only a request: Reactor.Backend reports the
// one really in use.
const (
	BackendAuto  Backend = "auto"
	BackendUring Backend = "uring"
	BackendEpoll Backend = "epoll"
)

// Config configures New. The zero value is usable.
type Config struct {
	// Backend selects the kernel interface; "" means BackendAuto.
	Backend Backend
	// Loops is the number of event loops, each a goroutine owning one
	// poller. 0 means runtime.GOMAXPROCS(0).
	Loops int
	// Logger receives the backend choice and connection-level errors at
	// debug level. nil means no logging.
	Logger *zap.Logger
	// Entries is the io_uring submission queue size per loop (0 = 1024).
	Entries int
	// EventBatch is how many events one loop turn harvests at most
	// (0 = 256).
	EventBatch int
	// IO chooses how a Conn moves bytes on io_uring; on epoll it always
	// reads and writes after readiness polls. IOAuto, the zero value,
	// goes through the ring where the kernel can (Linux 6.0): one
	// multishot RECV per Conn into buffers the loop lends the kernel, so
	// a message costs no poll and no read(2), and an idle Conn holds no
	// buffer. Reactor.IOPath says which runs, and why.
	IO IOMode
	// RecvBuffers is how many receive buffers each loop lends the kernel
	// (a power of two up to 32768; 0 = 256), RecvBufferSize their size
	// (0 = 16 KiB). A receive takes a whole buffer however few bytes it
	// brings, and gives it back once OnData returns (or, where a Write
	// sent the bytes from it in place, ListenConfig.SendInPlace, once that
	// send is done with them); the kernel takes
	// them in turn, so under load all of them become resident (4 MiB a
	// loop by default) and stay so. A turn in which more Conns receive
	// than there are buffers ends the rest for want of one
	// (Stats.RecvNoBuffers): they are armed again, and a Conn starved
	// again before any bytes came reads once after a poll
	// (Stats.RecvPolled). At 1,000 connections × 64 B and 50 × 16 KiB,
	// 256, 512 and 1,024 buffers measured the same CPU a message within
	// the machine's noise; buffers of 4 KiB cost twice as much at 16 KiB
	// messages.
	RecvBuffers, RecvBufferSize int

	// RecvIncremental consumes the receive buffers incrementally where
	// the kernel can (Linux 6.12; Reactor.IOPath says "consumed
	// incrementally"): a receive takes only the bytes it brings, the next
	// one continuing in the same buffer, so that a burst of small messages
	// from many Conns fits in a few buffers and none is sent to read after
	// a poll (300 Conns × 64 B into 16 buffers: 0 receives ran out, 274
	// with whole buffers). The same memory is then laid out in buffers of
	// 64 KiB where RecvBufferSize is smaller, and receives that must stay
	// within RecvBufferSize (a Conn whose output backs up, a NetConn's
	// Read) take whole buffers from a few of their own. The cost: a message
	// that reaches the end of a buffer arrives in two pieces, and once the
	// pieces no longer line up with the buffers about one 16 KiB message
	// in four does (echod at 50 × 16 KiB: 10% more CPU a message than with
	// whole buffers when first measured; unchanged at 64 B). Off by default
	// for that reason: make compare on a 16-core Xeon (2026-11-30, one
	// loop, 3 rounds) put its CPU a message at 0.84-0.96× whole buffers'
	// at 64 B, most where the server fell behind, and at 1.15-1.25× at
	// 16 KiB (on the 2-vCPU machine where the rest was measured, 1.0× at
	// 16 KiB: no message split there).
	RecvIncremental bool

	// LockLoops locks each loop goroutine to an OS thread of its own
	// (runtime.LockOSThread) for its life; it still waits in Go's
	// netpoller. On io_uring the kernel runs a receive's completion work
	// on the thread that submitted the receive, and a loop that moves
	// between threads leaves its ring's receives owned by threads that
	// run other loops, which then post its completions across CPUs. With
	// 2 loops that cost more than locking did (not yet measured with more
	// loops, where the unlocked cost was seen: 10.0 µs of CPU a message
	// at 4 loops against 6.2 at one on a 16-core machine): echod with 2 loops
	// on io_uring, sharing 2 CPUs with its load (2026-11-30, 4 alternating
	// pairs a cell, server CPU a message locked over unlocked, medians):
	// 0.81× at 100 × 64 B, 0.77× at 1,000 × 64 B, 0.87× at 50 × 16 KiB;
	// on epoll 0.98× at 1,000 × 64 B. The price is every wake-up of a
	// parked loop: its thread must take the P back, a futex wake and a
	// switch, and a loop that parks after every message pays it every
	// message: a lone loop measured 1.05× unlocked's CPU at 1,000 × 64 B
	// and 1.44× at 1 × 64 B, and 2 loops 1.2-1.3× at 10 connections and
	// 1.9-2.1× at one, with lower throughput. The wake cycle of a
	// goroutine waiting in Poll or Arm (BenchmarkPollCycle,
	// BenchmarkArmCycle, one loop on io_uring) took 75-83 µs locked
	// against 14-16 µs unlocked and Go's netpoller's 12-14 µs (half of
	// that locked cost is the yield a loop makes after such a wake-up, for
	// fairness: see park.go). So: for servers with several loops that stay
	// busy, whose handlers answer on the loop (echod --lock-loops).
	LockLoops bool

	// KernelWait has each loop wait for its poller in the kernel
	// (io_uring_enter, epoll_wait) on an OS thread of its own, as a C event
	// loop does, instead of parking in Go's netpoller; on io_uring its ring
	// is then SINGLE_ISSUER|DEFER_TASKRUN. While busy, the loop keeps its
	// P across its waits; once idle it gives it up (kernelwait.go). echod
	// on the 2-vCPU VM, one loop, server CPU a message against the parked
	// loop in alternating rounds (medians; 2026-11-30): 0.88× at
	// 1 connection × 64 B (0.98× gnet's, 1.03× the C io_uring server's),
	// 0.98× at 100, 1.00× at 1,000, 0.94× at 50 × 16 KiB; on epoll 0.85×
	// at 1 × 64 B. The price is everything else on the loop's P: a
	// goroutine the loop readies (a Poll or Arm waiter, a net.Conn reader
	// or writer, one a handler signals) runs when the loop idles or the
	// runtime preempts it (10-20 ms), unless another P is free, so it
	// suits servers whose handlers answer on the loop (echod), not the
	// net.Conn layer: TestNettestConn took 13 s with it against 2 s.
	// Loops hold their Ps only while there are no more loops than
	// GOMAXPROCS: more would wait for each other's preemption (echod, 4
	// loops on 2 Ps: p99.9 20 ms against 3.4 ms parked), so then every
	// wait gives the P up. On io_uring a busy loop also gathers its
	// batches (poller.Poller.Gather): after a turn that served n > 1
	// Events, the enter that hands its requests over waits up to 50 µs
	// for n completions, and is the turn's only system call: at 100
	// connections × 64 B echod went from 0.9 system calls a message to
	// 0.23 and to 0.86× the C io_uring server's CPU (make compare,
	// 2026-11-30, source c5cf0c3), and to 0.04 and 0.83× once that enter
	// was the only one (2026-12-01, source 5247b6d). Loops
	// gather, as they hold their Ps, only while there are no more loops
	// than GOMAXPROCS.
	KernelWait bool
}

// IOMode is Config.IO.
type IOMode string

// The read paths.
const (
	IOAuto IOMode = ""     // through the ring where the kernel can, else after polls
	IOPoll IOMode = "poll" // after readiness polls, with read(2) and write(2)
)

// Result is the one completion of a request.
type Result struct {
	// Events holds the ready conditions when Err is nil.
	Events Events
	// Err is nil, ErrCanceled, ErrClosed, ErrFdClosed,
	// os.ErrDeadlineExceeded (a deadline given at arm time passed) or the
	// error the kernel reported for the fd (e.g. unix.EBADF).
	Err error
}

// ErrCanceled is the result of a request whose Cancel returned true, and of
// a Poll whose context ended first (Poll then returns ctx.Err()).
var ErrCanceled = errors.New("reactor: request canceled")

// ErrClosed is the result of every request outstanding when the Reactor
// closed, and the error of any call made after; Conn.Write and PacketConn
// methods return it once their connection closed.
var ErrClosed = errors.New("reactor: closed")

// ErrFdClosed is the result of the requests outstanding on an fd when
// Reactor.CloseFd closed it.
var ErrFdClosed = errors.New("reactor: fd closed through the reactor")

// ErrUnavailable is returned by New when the requested backend cannot be
// used; the error's message carries the reason (e.g. a seccomp profile
// denying io_uring with EPERM).
var ErrUnavailable = errors.New("reactor: backend unavailable")

// ErrDrainIncomplete is returned by Listener.Shutdown when, before its
// context ended, a deadline (idle, read, write or the flush bound) closed
// some Conns while they drained, discarding their pending output.
var ErrDrainIncomplete = errors.New("reactor: connections closed by a deadline while draining")

// ErrIdleTimeout is wrapped by the error OnClose receives when a Conn saw no
// bytes in either direction for ListenConfig.IdleTimeout.
var ErrIdleTimeout = errors.New("reactor: idle timeout")

// ErrOnLoop is returned by the blocking calls (Reactor.Close, Reactor.Poll,
// Listener.Shutdown, Listener.Close) when they are made from a callback
// running on one of the reactor's loops, which they would wait for forever.
var ErrOnLoop = errors.New("reactor: blocking call made from a loop callback")

// Stats is a snapshot of the counters of all loops.
type Stats struct {
	Armed           uint64 // requests accepted by Arm/Poll and internal users
	CompletedReady  uint64 // completed with ready events
	CompletedError  uint64 // completed with a kernel error (or an arm the backend refused)
	CompletedCancel uint64 // completed with ErrCanceled
	CompletedClosed uint64 // completed with ErrClosed, ErrFdClosed or os.ErrDeadlineExceeded (the closer's outcome)
	StaleDropped    uint64 // events whose tag no longer named a live request
	Rearmed         uint64 // events for the other direction that re-armed
	Wakeups         uint64 // times another goroutine woke a sleeping loop
	LoopTurns       uint64 // loop iterations (one wait each)
	KernelEnters    uint64 // the loops' polling syscalls: the poller's (epoll_ctl, epoll_wait, io_uring_enter); not the producers' wake-ups (Wakeups, which cost no system call) nor the connection layer's reads and writes
	EventsReaped    uint64 // events harvested from the backend
	Gathered        uint64 // looks that asked the kernel to wait, briefly, for a batch (Config.KernelWait on io_uring, under load); some found it posted already
	MaxBatch        uint64 // largest number of events one turn harvested
	Outstanding     int64  // requests armed and not yet completed
	Timers          int64  // deadlines on the loops' heaps (request deadlines, Conns' write timeouts and close bounds; not idle and read timeouts, which each loop's sweep watches), and listening sockets waiting out an accept backoff (as of their last turn)
	BackendArmed    int64  // polls the backends still hold armed, completed requests whose kernel completion is owed included (as of the last turn)
	Received        uint64 // chunks Conns received through the ring (Config.IO)
	RecvNoBuffers   uint64 // Conn receives the kernel ended because every receive buffer was lent out (each was armed again at once)
	RecvPolled      uint64 // of those, the ones whose Conn then read once after a poll, starved twice with no bytes between
	SentInPlace     uint64 // receive buffers Writes sent from instead of copying (ListenConfig.SendInPlace)
	InPlaceHeld     int64  // of those, the ones still held by a send (the receives cannot use them meanwhile)
}

// Completed is the sum of all completions.
func (s Stats) Completed() uint64 {
	return s.CompletedReady + s.CompletedError + s.CompletedCancel + s.CompletedClosed
}

func (c Config) withDefaults(gomaxprocs int) Config {
	if c.Backend == "" {
		c.Backend = BackendAuto
	}
	if c.Loops <= 0 {
		c.Loops = gomaxprocs
	}
	if c.Entries <= 0 {
		c.Entries = 1024
	}
	if c.EventBatch <= 0 {
		c.EventBatch = 256
	}
	if c.RecvBuffers <= 0 {
		c.RecvBuffers = 256
	}
	if c.RecvBufferSize <= 0 {
		c.RecvBufferSize = 16 << 10
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// monotonic nanoseconds, for the loops' timer heaps.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// maxWait bounds every timeout and deadline the layer adds to nanotime:
// longer ones act as it, a century, which is never in practice. Unbounded,
// a duration of centuries (IdleTimeout: 1<<63 - 1, an ArmDeadline in the
// year 9999) wrapped the sum negative, which is due at once.
const maxWait = 100 * 365 * 24 * time.Hour

// nanoAfter returns the nanotime d after base, d bounded by maxWait.
func nanoAfter(base int64, d time.Duration) int64 { return base + int64(min(d, maxWait)) }
