//go:build linux

package reactor

import (
	"sync"
	"sync/atomic"

	"github.com/oneshot-io/oneshot/cancel"
)

// cmdOp names what a command asks its loop to do.
type cmdOp uint8

const (
	opArm     cmdOp = iota + 1 // arm h (Submitted) with the backend
	opCancel                   // h's Cancel won while it was OnQueue: withdraw it
	opCloseFd                  // complete fd's requests, then close fd
	opTask                     // obj.runTask(l, arg) (connection layer)
)

// cmd is one entry of a loop's inbox.
type cmd struct {
	op  cmdOp
	arg int32
	fd  int32
	h   cancel.Handle[reqData]
	obj task
	// when: opArm's deadline (nanotime; 0 = none), which the loop puts
	// on its timer heap once the arm is made (loop.exec).
	when int64
}

// task is implemented by the connection layer's objects (*Conn, *lsock,
// lnSweep, *PacketConn): work another goroutine hands to the object's
// loop.
type task interface {
	runTask(l *loop, arg int32)
}

// inbox is the loop's multi-producer single-consumer queue. Producers append
// under mu; the loop swaps the whole slice out under mu and works through it
// without the lock, so a producer never waits for the loop to process, and
// the two backing arrays are reused (no allocation in steady state).
//
// The wakeup protocol is a Dekker pair on sequentially consistent atomics:
//
//	producer: append, n.Add(1)       then  CAS sleeping true→false → wake if won
//	loop:     sleeping.Store(true)   then  load n → wait without blocking if > 0
//
// Either the producer sees sleeping (and wakes the loop) or the loop sees the
// new entry (and does not block), so an entry is never left behind a sleeping
// loop, and a loop that is running is never woken: commands posted from a
// callback on the loop cost no system call.
type inbox struct {
	mu     sync.Mutex
	cmds   []cmd // guarded by mu
	closed bool  // guarded by mu: the loop took its last batch

	n        atomic.Int32 // len(cmds), readable without mu
	sleeping atomic.Bool  // the loop is (about to be) parked (see parker)
}

// push appends c and reports whether the loop sleeps and must be woken; ok
// is false when the loop has stopped taking commands (the reactor closed).
func (q *inbox) push(c cmd) (wake, ok bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false, false
	}
	q.cmds = append(q.cmds, c)
	q.n.Add(1)
	q.mu.Unlock()
	// Only the producer that flips sleeping wakes: the loop is woken once
	// per sleep however many push meanwhile.
	return q.sleeping.CompareAndSwap(true, false), true
}

// take swaps the queued commands out, leaving spare (emptied) as the next
// backing array. With last set, the inbox closes: later pushes fail.
func (q *inbox) take(spare []cmd, last bool) []cmd {
	q.mu.Lock()
	out := q.cmds
	q.cmds = spare[:0]
	q.n.Store(0)
	if last {
		q.closed = true
	}
	q.mu.Unlock()
	return out
}
