//go:build linux

package reactor

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wordParts is a connWord read part by part, for comparing.
type wordParts struct {
	phase   connPhase
	bits    connBits // every one-bit part
	tasks   uint32   // asked, as 1<<task
	pending int
}

var allBits = []connBits{bInCall, bTaskQueued, bWrShut, bCloseAsked, lfPeerEOF, lfOpened, lfPollOnce, lfDrained, lfSendOwed, lfBackedUp, lfStarved, bWriteFailed}

func partsOf(w *connWord) wordParts {
	p := wordParts{phase: w.phase(), pending: w.pending()}
	for _, b := range allBits {
		if w.has(b) {
			p.bits |= b
		}
	}
	p.tasks = uint32(w.v.Load() & askMask >> askShift)
	return p
}

// TestConnWordPartsKeepEachOther: every operation on a Conn's state word
// changes its own part, as it says, and leaves every other part as it was,
// from words with every part set at random (and at its extremes).
func TestConnWordPartsKeepEachOther(t *testing.T) {
	type op struct {
		name string
		do   func(w *connWord)  // the operation
		want func(p *wordParts) // its effect on the parts
	}
	var ops []op
	for ph := range numPhases {
		ops = append(ops, op{"setPhase(" + ph.String() + ")",
			func(w *connWord) { w.setPhase(ph) }, func(p *wordParts) { p.phase = ph }})
	}
	for _, b := range allBits {
		for _, on := range []bool{false, true} {
			ops = append(ops, op{"set", func(w *connWord) { w.set(b, on) }, func(p *wordParts) {
				if on {
					p.bits |= b
				} else {
					p.bits &^= b
				}
			}})
		}
	}
	for task := taskOpen; task <= taskForceStop; task++ {
		ops = append(ops, op{"ask", func(w *connWord) { w.ask(task) }, func(p *wordParts) { p.tasks |= 1 << task }})
	}
	ops = append(ops, op{"endCall", func(w *connWord) { w.endCall() }, func(p *wordParts) { p.bits &^= bInCall; p.tasks = 0 }})
	for _, n := range []int{0, 1, 64 << 10, maxPendingLimit, maxPendingLimit + 1, 1 << 40} {
		ops = append(ops, op{"setPending", func(w *connWord) { w.setPending(n) }, func(p *wordParts) { p.pending = min(n, maxPendingLimit) }})
	}

	rng := rand.New(rand.NewPCG(1, 2))
	starts := []wordParts{
		{},
		{phase: phClosed, bits: bInCall | bTaskQueued | bWrShut | bCloseAsked | lfPeerEOF | lfOpened | lfPollOnce | lfDrained | lfSendOwed | lfBackedUp | lfStarved | bWriteFailed, tasks: 0xfe, pending: maxPendingLimit},
	}
	for range 200 {
		var p wordParts
		p.phase = connPhase(rng.IntN(int(numPhases)))
		for _, b := range allBits {
			if rng.IntN(2) == 0 {
				p.bits |= b
			}
		}
		p.tasks = uint32(rng.IntN(128)) << 1
		p.pending = rng.IntN(maxPendingLimit + 1)
		starts = append(starts, p)
	}
	for _, start := range starts {
		for _, o := range ops {
			var w connWord
			w.setPhase(start.phase)
			for _, b := range allBits {
				w.set(b, start.bits&b != 0)
			}
			for task := taskOpen; task <= taskForceStop; task++ {
				if start.tasks&(1<<task) != 0 {
					w.ask(task)
				}
			}
			w.setPending(start.pending)
			if got := partsOf(&w); got != start {
				t.Fatalf("building %+v gave %+v", start, got)
			}
			want := start
			o.want(&want)
			o.do(&w)
			if got := partsOf(&w); got != want {
				t.Fatalf("%s on %+v: %+v, want %+v", o.name, start, got, want)
			}
		}
	}
}

// TestConnWordAskAndEndCall: ask reports whether a handler call ran when
// the task was asked, and endCall returns exactly the tasks asked since the
// last one, so a request made during a call is taken when it ends, and one
// made outside a call is left for the asker to queue.
func TestConnWordAskAndEndCall(t *testing.T) {
	var w connWord
	if w.ask(taskFlush) {
		t.Fatal("ask outside a call said a call runs")
	}
	w.set(bInCall, true)
	if !w.ask(taskClose) {
		t.Fatal("ask during a call said none runs")
	}
	if got, want := w.endCall(), uint32(1<<taskFlush|1<<taskClose); got != want {
		t.Fatalf("endCall took %#b, want %#b (an ask outside a call stays asked: tasks are safe to repeat)", got, want)
	}
	if w.has(bInCall) {
		t.Fatal("endCall left the call marked")
	}
	if got := w.endCall(); got != 0 {
		t.Fatalf("a second endCall took %#b again", got)
	}
}

// TestConnWordWritersKeepEachOther: the parts' writers run at once, as a
// Conn's do (the loop moving the phase and its flags, a Write storing the
// pending count, Close and CloseWrite setting theirs, requesters asking
// tasks), and none ever undoes another's write: after each of its own
// writes a writer reads back what it wrote, and at the end every part
// holds its writer's last value. A plain load and then store of the whole
// word by any one of them fails this, not always but almost every run on
// two CPUs (-race reports nothing there: both accesses are atomic).
func TestConnWordWritersKeepEachOther(t *testing.T) {
	const rounds = 1000000
	var w connWord
	var wg sync.WaitGroup
	fail := make(chan string, 4)
	start := make(chan struct{}) // all four at once, so that they overlap
	wg.Add(4)
	go func() { // the loop
		defer wg.Done()
		<-start
		for i := range rounds {
			ph := connPhase(i % int(numPhases))
			w.setPhase(ph)
			on := i%2 == 0
			w.set(lfDrained, on)
			if w.phase() != ph || w.has(lfDrained) != on {
				fail <- "the loop's phase or flag was undone"
				return
			}
		}
	}()
	go func() { // Writes
		defer wg.Done()
		<-start
		for i := range rounds {
			w.setPending(i * 7)
			if w.pending() != i*7 {
				fail <- "the pending count was undone"
				return
			}
		}
	}()
	go func() { // Close and CloseWrite, under the Conn's mutex
		defer wg.Done()
		<-start
		for i := range rounds {
			on := i%3 != 0
			w.set(bCloseAsked, on)
			w.set(bWrShut, !on)
			if w.has(bCloseAsked) != on || w.has(bWrShut) == on {
				fail <- "a flag set under mu was undone"
				return
			}
		}
	}()
	go func() { // requesters
		defer wg.Done()
		<-start
		for range rounds {
			w.ask(taskFlush)
		}
	}()
	close(start)
	wg.Wait()
	close(fail)
	for msg := range fail {
		t.Fatal(msg)
	}
	last := rounds - 1
	if w.phase() != connPhase(last%int(numPhases)) || w.has(lfDrained) != (last%2 == 0) ||
		w.pending() != last*7 || w.has(bCloseAsked) != (last%3 != 0) || w.endCall() != 1<<taskFlush {
		t.Fatalf("parts at the end: %+v", partsOf(&w))
	}
}

// TestConnWordAskDuringACallIsTaken: a requester's ask and the loop's end
// of a handler call race, as a Write from another goroutine and OnData's
// return do; every ask that found a call running must be taken by the
// loop's endCall. An endCall that read the tasks and then cleared them in
// a second step would clear an ask made between the two, and the asker
// would wait for it forever (here, until the deadline).
func TestConnWordAskDuringACallIsTaken(t *testing.T) {
	const asks = 300000
	var w connWord
	var taken atomic.Int64 // endCalls that took taskFlush
	done := make(chan struct{})
	go func() { // the loop: call after call
		for {
			select {
			case <-done:
				return
			default:
			}
			w.set(bInCall, true)
			if w.endCall()&(1<<taskFlush) != 0 {
				taken.Add(1)
			}
		}
	}()
	defer close(done)
	deadline := time.Now().Add(10 * time.Second)
	for i := range asks {
		before := taken.Load()
		if !w.ask(taskFlush) {
			// No call ran: the asker queues the task itself (kickLocked).
			// The bit it left is taken by some later endCall; clearing it
			// here keeps that from passing for a later ask's.
			w.v.And(^uint64(1 << taskFlush << askShift))
			continue
		}
		for taken.Load() == before {
			if time.Now().After(deadline) {
				t.Fatalf("ask %d found a call running, and no endCall took it", i)
			}
			runtime.Gosched()
		}
	}
}

// TestWriteErrIsRecorded: the error failWrite records is what writeErr,
// and so every later Write, reports; before it, nothing. (writeErr looks
// at rare only once the word says a write failed.)
func TestWriteErrIsRecorded(t *testing.T) {
	var c Conn
	if err := c.writeErr(); err != nil {
		t.Fatalf("writeErr of a fresh Conn = %v", err)
	}
	c.more().closeErr = errors.New("a drain's reason, not a write error")
	if err := c.writeErr(); err != nil {
		t.Fatalf("writeErr with a rare part but no write error = %v", err)
	}
	failed := errors.New("reactor: write: broken pipe")
	c.failWrite(failed)
	if err := c.writeErr(); err != failed {
		t.Fatalf("writeErr after failWrite = %v, want %v", err, failed)
	}
}
