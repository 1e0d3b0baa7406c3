//go:build linux

package load

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

// blockPad is how much longer than a message a connection's random block
// is: a prime, so the offsets seq*offsetStep mod blockLen cycle through
// every position before repeating.
const (
	blockPad   = 251
	offsetStep = 131
)

// sent is one message in flight, from the writer to the reader.
type sent struct {
	seq      uint64
	start    int64 // ns since engine.base: write time, or intended time with Rate
	measured bool  // start fell in the measured phase
}

// conn is one connection's load. With Pipeline 1 one goroutine writes and
// reads in turn (runSync); otherwise a writer and a reader goroutine share
// the connection, the window sem bounding what is in flight.
type conn struct {
	e        *engine // constant
	id       int     // constant
	nc       net.Conn
	stream   bool   // constant: TCP or unix stream, not datagram
	data     []byte // constant: the random block twice over, 2*blockLen
	blockLen int    // constant
	quota    int64  // constant: measured messages to send; -1 means no limit
	shard    *shard // constant: where latencies go

	msgs     atomic.Int64  // measured messages echoed; read by progress
	failed   atomic.Bool   // set once by fail
	dead     chan struct{} // closed by fail
	lastDone int64         // owned by the reading goroutine: ns of last measured echo
	buf      []byte        // owned by the reading goroutine
	rdl, wdl int64         // read/write deadlines set on nc, ns since base; owned by reader/writer
	lag      lagStats      // owned by the writing goroutine (Rate only)
	timer    *time.Timer   // owned by the writing goroutine (Rate)
	tick     chan struct{} // from the pacer (Rate): a message may be due; constant
}

func newConn(e *engine, id int, nc net.Conn, quota int64) *conn {
	bl := e.cfg.Size + blockPad
	c := &conn{
		e: e, id: id, nc: nc, stream: e.cfg.Network != "udp",
		blockLen: bl, quota: quota, shard: &e.shards[id%len(e.shards)],
		dead: make(chan struct{}), buf: make([]byte, e.cfg.Size+1),
		data: make([]byte, 2*bl),
	}
	r := rand.New(rand.NewPCG(e.cfg.Seed, uint64(id)))
	for i := 0; i < bl; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < bl; j++ {
			c.data[i+j] = byte(v >> (8 * j))
		}
	}
	copy(c.data[bl:], c.data[:bl])
	return c
}

// payload is message seq's bytes: a window of the block that moves with seq.
func (c *conn) payload(seq uint64) []byte {
	off := int(seq * offsetStep % uint64(c.blockLen))
	return c.data[off : off+c.e.cfg.Size]
}

// fail records the connection's first error and closes it, which unblocks
// its other goroutine; later errors (caused by that close) are not counted.
// Errors after the run was interrupted are not counted either, except
// mismatches, which are never caused by stopping.
func (c *conn) fail(kind Kind, detail string) {
	if !c.failed.CompareAndSwap(false, true) {
		return
	}
	close(c.dead)
	c.nc.Close()
	if c.e.stopping.Load() && kind != KindMismatch {
		return
	}
	c.e.count(kind, detail)
}

// next decides message seq's start time. It returns ok false when the
// connection has nothing more to send: the phase ended, the quota is met,
// the run is stopping, or the connection failed.
func (c *conn) next(seq uint64, sentMeasured *int64) (s sent, ok bool) {
	e := c.e
	if e.stopping.Load() {
		return s, false
	}
	now := e.now()
	s.start = now
	if e.rate {
		s.start = e.intended(c.id, seq)
	}
	// Open loop, a message due before the end but not sent by then is
	// left: the phase is over (a rate the machine cannot keep leaves a
	// backlog that took its whole due span to send again, past --duration).
	if s.start >= e.end || now >= e.end {
		return s, false
	}
	s.seq, s.measured = seq, s.start >= e.warmupEnd
	if s.measured {
		if c.quota >= 0 && *sentMeasured >= c.quota {
			return s, false
		}
		*sentMeasured++
	}
	if e.rate && !c.sleepUntil(s.start) {
		return s, false
	}
	return s, true
}

// sleepUntil waits until ns since base, reporting false if the connection
// failed or the run is stopping first. It sleeps on a runtime timer, which
// may wake up to ~1 ms late, and with a pacer also on its ticks, which come
// on time; a tick may be left over from a message sent late, so the time
// is checked again after each. The timer stays as a backstop: no wait
// depends on the pacer alone.
func (c *conn) sleepUntil(t int64) bool {
	for {
		d := time.Duration(t - c.e.now())
		if d <= 0 {
			return true
		}
		if c.timer == nil {
			c.timer = time.NewTimer(d)
		} else {
			c.timer.Reset(d)
		}
		select {
		case <-c.tick: // nil without a pacer
			c.timer.Stop()
			continue
		case <-c.timer.C:
			return true
		case <-c.dead:
		case <-c.e.stop:
		}
		c.timer.Stop()
		return false
	}
}

// write sends message s, refreshing the write deadline when it is less
// than three quarters of Timeout away (one SetWriteDeadline per ~Timeout/4
// instead of one per message).
func (c *conn) write(s sent) bool {
	to := int64(c.e.cfg.Timeout)
	now := c.e.now()
	if c.wdl-now < to-to/4 {
		c.wdl = now + to
		c.nc.SetWriteDeadline(c.e.base.Add(time.Duration(c.wdl)))
	}
	if c.e.rate && s.measured {
		c.lag.add(now - s.start)
	}
	if _, err := c.nc.Write(c.payload(s.seq)); err != nil {
		c.fail(classify(err), fmt.Sprintf("conn %d message %d: write: %v", c.id, s.seq, err))
		return false
	}
	return true
}

// read waits for message s's echo, checks every byte and records its
// latency. It reports false after recording an error.
func (c *conn) read(s sent) bool {
	e, size := c.e, c.e.cfg.Size
	to := int64(e.cfg.Timeout)
	if now := e.now(); c.rdl-now < to-to/4 {
		c.rdl = now + to
		c.nc.SetReadDeadline(e.base.Add(time.Duration(c.rdl)))
	}
	var n int
	var err error
	if c.stream {
		n, err = io.ReadFull(c.nc, c.buf[:size])
	} else {
		n, err = c.nc.Read(c.buf[:size+1])
		switch {
		case err == nil && n < size:
			err = io.ErrUnexpectedEOF
		case err == nil && n > size:
			c.fail(KindMismatch, fmt.Sprintf("conn %d message %d: datagram of %d bytes, sent %d", c.id, s.seq, n, size))
			return false
		}
	}
	if err != nil {
		c.fail(classify(err), fmt.Sprintf("conn %d message %d: read %d of %d bytes: %v", c.id, s.seq, n, size, err))
		return false
	}
	want := c.payload(s.seq)
	got := c.buf[:size]
	if string(got) != string(want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		c.fail(KindMismatch, fmt.Sprintf("conn %d message %d: byte %d is %#02x, sent %#02x", c.id, s.seq, i, got[i], want[i]))
		return false
	}
	if s.measured {
		now := e.now()
		c.shard.record(now - s.start)
		c.msgs.Add(1)
		c.lastDone = now
	}
	return true
}

// runSync is the Pipeline == 1 loop: write, wait for the echo, repeat.
func (c *conn) runSync() {
	var sentMeasured int64
	for seq := uint64(0); ; seq++ {
		s, ok := c.next(seq, &sentMeasured)
		if !ok || !c.write(s) || !c.read(s) {
			return
		}
	}
}

// runPipelined keeps up to Pipeline messages in flight: the writer takes a
// window slot and queues the message's start before writing it (so the
// reader always finds it), the reader gives the slot back after its echo.
func (c *conn) runPipelined() {
	p := c.e.cfg.Pipeline
	sem := make(chan struct{}, p)
	inflight := make(chan sent, p) // never blocks: sem admits at most p
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range inflight {
			if !c.read(s) {
				return
			}
			<-sem
		}
	}()
	var sentMeasured int64
	for seq := uint64(0); ; seq++ {
		admitted := false
		select {
		case sem <- struct{}{}:
			admitted = true
		case <-c.dead:
		case <-c.e.stop:
		}
		if !admitted {
			break
		}
		s, ok := c.next(seq, &sentMeasured)
		if !ok {
			break
		}
		inflight <- s
		if !c.write(s) {
			break
		}
	}
	close(inflight)
	<-done
}

// lagStats summarizes how late messages were written after their intended
// send time in open loop.
type lagStats struct {
	n, sum, max int64 // ns
}

func (l *lagStats) add(ns int64) {
	ns = max(ns, 0)
	l.n++
	l.sum += ns
	l.max = max(l.max, ns)
}

func (l *lagStats) merge(o lagStats) {
	l.n += o.n
	l.sum += o.sum
	l.max = max(l.max, o.max)
}
