//go:build linux

// Package load is echoload's engine: it opens connections to an echo server,
// sends messages whose every byte it checks when they come back, and
// measures latency into an HDR histogram.
//
// # Phases
//
//	connect ──► warmup ──► measured ──► drain ──► report
//
// Connect dials every connection (at ConnectRate if set). Warmup sends
// messages that are checked but not counted. A message belongs to the
// measured phase when its start time falls in it; the phase ends after
// Duration, or once Messages measured messages have been sent. Drain waits
// (up to Timeout) for the echoes still in flight, checks and counts them.
//
// # Closed and open loop
//
// Without Rate each connection keeps Pipeline messages in flight and a
// message's latency runs from its write. With Rate the engine is open-loop:
// message k of connection i has an intended send time fixed in advance,
// and its latency runs from that time, not from the moment the write
// happened. A server that stalls therefore delays every message scheduled
// during the stall, and the stall shows in the tail instead of being hidden
// by a client that politely waited (coordinated omission). A timerfd pacer
// wakes writers on time (see pacer); Report.SendLag says how late writes
// still were, and Report.BelowRate flags a schedule that was not kept.
//
// # Checking
//
// Each connection owns a random block of bytes; message seq is a window of
// that block at an offset that moves with seq, so consecutive messages
// differ, connections differ, and a corrupt, lost, duplicated or reordered
// byte is seen as a mismatch. Errors are counted by kind (see Kind); the
// first error on a connection ends that connection, the others go on.
package load

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config is one load run. The zero value is not valid; see Validate.
type Config struct {
	// Network is "tcp", "unix" or "udp".
	Network string `json:"network"`
	// Address is host:port, or a socket path for unix.
	Address string `json:"address"`
	// Conns is the number of connections.
	Conns int `json:"conns"`
	// Size is the bytes per message.
	Size int `json:"size"`
	// Pipeline is the most messages in flight on one connection.
	Pipeline int `json:"pipeline"`
	// Duration is the measured phase's length when Messages is 0.
	Duration time.Duration `json:"duration_ns"`
	// Messages, when > 0, ends the measured phase after this many
	// messages in total (spread evenly over the connections).
	Messages int64 `json:"messages"`
	// Rate, when > 0, is the total intended messages per second over all
	// connections (open loop); 0 is closed loop.
	Rate float64 `json:"rate"`
	// Warmup is sent and checked before the measured phase, not counted.
	Warmup time.Duration `json:"warmup_ns"`
	// ConnectRate, when > 0, limits new connections per second.
	ConnectRate float64 `json:"connect_rate"`
	// Timeout bounds every dial, write and wait for an echo; a message
	// unanswered for this long is a timeout error.
	Timeout time.Duration `json:"timeout_ns"`
	// ServerPID, when > 0, is the echo server's process: its CPU time
	// (utime+stime from /proc/PID/stat) is read at the measured phase's
	// start and end and reported per message.
	ServerPID int `json:"server_pid,omitempty"`
	// Seed varies the payload bytes between runs; 0 is a fixed default.
	Seed uint64 `json:"seed"`

	// Progress, if set, is called about every ProgressInterval (default
	// 1 s) from a goroutine of Run's; it must not block.
	Progress         func(Progress) `json:"-"`
	ProgressInterval time.Duration  `json:"-"`
}

// Progress is a live snapshot passed to Config.Progress.
type Progress struct {
	Elapsed  time.Duration // since the first message
	Warmup   bool          // still in warmup
	Messages int64         // measured messages echoed so far
	PerSec   float64       // measured messages/s over the last interval
	Errors   int64         // errors so far, all kinds
}

// MaxConns bounds Config.Conns: far more than one machine's descriptors,
// and a bound on the tables sized by it (a billion once ran the process
// out of memory before a socket was opened).
const MaxConns = 1 << 20

// MinRate and MaxRate bound an open-loop Config.Rate (msgs/s over all
// connections). Above MaxRate a message's slot in the schedule would be
// shorter than the clock's nanosecond, and no machine sends that fast;
// below MinRate one message a connection would take longer than any run
// (a rate of 1e-300 made the schedule's times infinite).
const (
	MinRate = 1e-3
	MaxRate = 1e9
)

// RateOK reports whether r is a Rate Validate accepts: 0 (closed loop) or
// a finite number between MinRate and MaxRate (NaN is neither).
func RateOK(r float64) bool { return r == 0 || (r >= MinRate && r <= MaxRate) }

// MaxDatagram is the largest UDP message: an IPv4 datagram's payload.
const MaxDatagram = 65507

// ErrBadConfig reports a Config that Validate rejects.
var ErrBadConfig = errors.New("bad config")

// ErrNoConnections reports that not one connection could be opened.
var ErrNoConnections = errors.New("no connection could be opened")

// Validate reports whether c describes a run Run can do, wrapping
// ErrBadConfig with the reason when not.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, a...)...)
	}
	switch c.Network {
	case "tcp", "unix", "udp":
	default:
		return bad("network %q: want tcp, unix or udp", c.Network)
	}
	switch {
	case c.Address == "":
		return bad("empty address")
	case c.Conns < 1 || c.Conns > MaxConns:
		return bad("conns %d: want between 1 and %d", c.Conns, MaxConns)
	case c.Size < 1:
		return bad("size %d: want >= 1", c.Size)
	case c.Network == "udp" && c.Size > MaxDatagram:
		return bad("size %d: a UDP message holds at most %d bytes", c.Size, MaxDatagram)
	case c.Pipeline < 1:
		return bad("pipeline %d: want >= 1", c.Pipeline)
	case c.Messages < 0:
		return bad("messages %d: want >= 0", c.Messages)
	case c.Messages == 0 && c.Duration <= 0:
		return bad("want a duration > 0 or a message count")
	case !RateOK(c.Rate):
		return bad("rate %g: want 0 (closed loop) or between %g and %g", c.Rate, MinRate, MaxRate)
	case c.Warmup < 0:
		return bad("warmup %v: want >= 0", c.Warmup)
	case !(c.ConnectRate >= 0) || math.IsInf(c.ConnectRate, 0):
		return bad("connect rate %g: want a finite number >= 0", c.ConnectRate)
	case c.Timeout <= 0:
		return bad("timeout %v: want > 0", c.Timeout)
	}
	return nil
}
