package poller_test

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"

	"github.com/oneshot-io/oneshot/poller"
)

// TestModel drives each backend with random interleavings of the reactor's
// operations on a few socketpairs: arm a reader or a writer, disarm, make
// readable, drain, fill and empty the send buffer, Wait with a buffer too
// small for a whole batch, and close+reopen on the same fd number, with
// Forget first or behind the poller's back. The harness fails a second Event
// or one for an unarmed tag; the model adds that only disarmed tags are
// Canceled, that only tags whose fd was closed behind the poller's back
// Fail, and that an In Event never reaches a tag whose file was never
// written to (the reopened number must not inherit the old file's
// readiness, nor the old tags the new file's). At the end every tag must
// have had its one Event. Every run ends by reaching each outcome on purpose
// (everyOutcome), so the last check holds however few steps rapid draws.
func TestModel(t *testing.T) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			p := c.wrap(openPoller(t, c.opts))
			var next uint64
			var kinds outcomes
			rapid.Check(t, func(rt *rapid.T) {
				m := newModel(rt, p, &next)
				m.kinds = &kinds
				defer m.close()
				rt.Repeat(m.actions())
				m.everyOutcome()
				m.finish()
				m.finished = true
			})
			t.Logf("Events: %+v", kinds)
			if kinds.ready == 0 || kinds.canceled == 0 || (c.opts.Backend == poller.Epoll && kinds.failed == 0) {
				t.Errorf("the runs did not reach every outcome: %+v", kinds)
			}
		})
	}
}

type slot struct {
	a, b  int // a is armed on; b is its peer
	epoch int // bumped by reopen
}

type armed struct {
	slot, epoch int
	dir         uint32
	disarmed    bool // Disarm or Forget asked for a cancel
	orphaned    bool // its fd was closed behind the poller's back
}

// outcomes counts the Events the model checked, to show the runs reach
// every kind.
type outcomes struct{ ready, canceled, failed int }

type model struct {
	kinds   *outcomes
	h       *harness
	next    *uint64 // tag counter shared by the runs on one poller
	slots   []slot
	info    map[uint64]*armed
	written map[[2]int]bool // (slot, epoch) that got data from its peer
	// finished: the run reached its end. A run rapid abandons midway (its
	// replayed data ran out, or an action failed) leaves Events owed, which
	// close takes without judging: the abandoned run's own failure, if
	// any, is what rapid reports.
	finished bool
}

func newModel(rt *rapid.T, p poller.Poller, next *uint64) *model {
	h := &harness{t: rt, p: p, armed: map[uint64]bool{}, seen: map[uint64]poller.Event{},
		buf: make([]poller.Event, 3), open: map[int]bool{}, nextTag: *next}
	m := &model{h: h, next: next, info: map[uint64]*armed{}, written: map[[2]int]bool{}}
	for range 3 {
		a, b := h.pair()
		m.slots = append(m.slots, slot{a: a, b: b})
	}
	return m
}

func (m *model) actions() map[string]func(*rapid.T) {
	h := m.h
	pick := func(rt *rapid.T) int { return rapid.IntRange(0, len(m.slots)-1).Draw(rt, "slot") }
	return map[string]func(*rapid.T){
		"arm": func(rt *rapid.T) {
			m.arm(pick(rt), rapid.SampledFrom([]uint32{poller.In, poller.Out}).Draw(rt, "dir"))
		},
		"disarm": func(rt *rapid.T) {
			if len(h.armed) == 0 {
				rt.Skip("nothing armed")
			}
			tags := make([]uint64, 0, len(h.armed))
			for tag := range h.armed {
				tags = append(tags, tag)
			}
			slices.Sort(tags) // map order is random; rapid needs a stable list
			m.disarm(rapid.SampledFrom(tags).Draw(rt, "tag"))
		},
		"write":  func(rt *rapid.T) { m.write(pick(rt)) },
		"drain":  func(rt *rapid.T) { h.drain(m.slots[pick(rt)].a) },
		"fill":   func(rt *rapid.T) { h.fill(m.slots[pick(rt)].a) },
		"unfill": func(rt *rapid.T) { h.drain(m.slots[pick(rt)].b) },
		"wait":   func(rt *rapid.T) { m.poll(0) },
		"reopen": func(rt *rapid.T) {
			forget := rapid.Bool().Draw(rt, "forget")
			m.reopen(pick(rt), forget, forget && rapid.Bool().Draw(rt, "settle"))
		},
		"settle": func(rt *rapid.T) { m.settle() },
	}
}

// arm arms a new tag for dir on slot i and returns it.
func (m *model) arm(i int, dir uint32) uint64 {
	tag := m.h.tag()
	m.h.arm(tag, m.slots[i].a, dir)
	m.info[tag] = &armed{slot: i, epoch: m.slots[i].epoch, dir: dir}
	return tag
}

// disarm disarms tag and reports whether Disarm made the request.
func (m *model) disarm(tag uint64) bool {
	if !m.h.p.Disarm(tag) {
		return false
	}
	if m.info[tag].disarmed {
		m.h.t.Fatalf("Disarm(%#x) = true twice", tag)
	}
	m.info[tag].disarmed = true
	return true
}

// write makes slot i's file readable.
func (m *model) write(i int) {
	m.h.write(m.slots[i].b)
	m.written[[2]int{i, m.slots[i].epoch}] = true
}

// settle Settles and proves that it left no disarmed tag in the kernel:
// the Waits that follow return each one's Event without waiting.
func (m *model) settle() {
	h := m.h
	if err := h.p.Settle(5 * time.Second); err != nil {
		h.t.Fatalf("Settle: %v", err)
	}
	for seen := -1; seen != len(h.seen); {
		seen = len(h.seen)
		m.poll(0)
	}
	for tag := range h.armed {
		if m.info[tag].disarmed {
			h.t.Fatalf("tag %#x disarmed before Settle has no Event after it", tag)
		}
	}
}

// reopen closes slot i's pair and puts a new one on the same numbers, with
// Forget first or behind the poller's back; with settle, Forget and Settle
// first, and then the close must release the file at once (its peer hangs
// up with no wait), however many polls held it.
func (m *model) reopen(i int, forget, settle bool) {
	h := m.h
	s := &m.slots[i]
	if forget {
		h.p.Forget(s.a)
		if settle {
			if err := h.p.Settle(5 * time.Second); err != nil {
				h.t.Fatalf("Settle: %v", err)
			}
		}
	} else {
		// Closed behind the poller's back, once the arms have reached
		// the kernel (a queued io_uring arm would take the next file on
		// the number: that is what Forget is for).
		m.poll(0)
	}
	for tag := range h.armed {
		switch a := m.info[tag]; {
		case a.slot != i:
		case forget:
			// Every tag on the number, orphans of an earlier close
			// behind the back included.
			a.disarmed = true
		case a.epoch == s.epoch:
			a.orphaned = true
		}
	}
	h.close(s.a)
	if settle {
		pfd := []unix.PollFd{{Fd: int32(s.b), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 0); err != nil || pfd[0].Revents&unix.POLLHUP == 0 {
			h.t.Fatalf("after Forget, Settle and close(%d) its peer's poll is %#x, %v; want POLLHUP at once: the file outlived close(2)", s.a, pfd[0].Revents, err)
		}
	}
	h.close(s.b)
	x, y := h.pair()
	switch s.a {
	case x:
		s.b = y
	case y:
		s.b = x
	default: // put the new file on the old number
		h.dup2(x, s.a)
		h.close(x)
		s.b = y
	}
	s.epoch++
}

// everyOutcome reaches each kind of Event on purpose, from whatever state
// the random steps left, so that every run checks the model on all of them
// however few steps rapid draws (under -short it runs a fifth of the
// checks, and a random run alone reached Failed in about half of them).
// It proves, on each backend: a reader on a file its peer wrote to is
// Ready; a reader on a file nobody wrote to, disarmed, is Canceled (Disarm
// makes the request, and nothing can win the race); and on epoll, a reader
// whose fd was closed behind the poller's back Fails when the number is
// armed again (the registration died with the file). On io_uring the poll
// holds the old file, so that tag ends Ready (its peer's close is a hang-up)
// or Canceled by finish.
func (m *model) everyOutcome() {
	h := m.h
	ready := m.arm(0, poller.In)
	m.write(0)

	m.reopen(1, true, false) // a file nobody wrote to
	canceled := m.arm(1, poller.In)
	if !m.disarm(canceled) {
		h.t.Fatalf("Disarm(%#x) = false for a reader on an unwritten file", canceled)
	}

	m.reopen(2, true, true)
	orphan := m.arm(2, poller.In)
	m.reopen(2, false, false)
	m.arm(2, poller.In)

	if ev := m.await(ready); ev.Events&poller.In == 0 || ev.Canceled || ev.Errno != 0 {
		h.t.Fatalf("reader on a written file: %v, want Ready with In", ev)
	}
	if ev := m.await(canceled); !ev.Canceled {
		h.t.Fatalf("disarmed reader on an unwritten file: %v, want Canceled", ev)
	}
	if h.p.Backend() == poller.Epoll {
		if ev := m.await(orphan); ev.Errno == 0 {
			h.t.Fatalf("reader on an fd closed behind epoll's back, number armed again: %v, want Failed", ev)
		}
	}
}

// await polls, with the model's checks, until tag's Event has come.
func (m *model) await(tag uint64) poller.Event { return m.h.awaitBy(tag, m.poll) }

// poll is one Wait with the model's checks on every Event.
func (m *model) poll(timeout time.Duration) {
	h := m.h
	before := len(h.seen)
	h.poll(timeout)
	if len(h.seen) == before {
		return
	}
	for tag, ev := range h.seen {
		a := m.info[tag]
		if a == nil {
			continue // checked already
		}
		switch {
		case ev.Canceled && !a.disarmed:
			h.t.Fatalf("%v: canceled but never disarmed", ev)
		case ev.Errno != 0 && !a.orphaned:
			h.t.Fatalf("%v: its fd was not closed behind the poller's back", ev)
		case ev.Errno != 0: // epoll noticed the number names another file
		case ev.Events&^(a.dir|poller.Err|poller.Hup) != 0:
			h.t.Fatalf("%v: bits outside the interest %#x", ev, a.dir)
		case ev.Events&(poller.In|poller.Hup|poller.Err) == poller.In && !m.written[[2]int{a.slot, a.epoch}]:
			// (With Hup, In is the end of file a closed peer left.)
			h.t.Fatalf("%v: In on a file nobody wrote to (stale readiness)", ev)
		}
		switch {
		case ev.Canceled:
			m.kinds.canceled++
		case ev.Errno != 0:
			m.kinds.failed++
		default:
			m.kinds.ready++
		}
		delete(m.info, tag) // checked
	}
}

// finish disarms what is left and proves each tag gets its one Event.
func (m *model) finish() {
	h := m.h
	for tag := range h.armed {
		if h.p.Disarm(tag) {
			m.info[tag].disarmed = true
		} else if !m.info[tag].disarmed {
			// Decided already: it is waiting in the poller.
			m.info[tag].disarmed = true
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.armed) > 0 && time.Now().Before(deadline) {
		m.poll(time.Until(deadline))
	}
	if len(h.armed) > 0 {
		h.t.Fatalf("tags without an Event: %v", h.armed)
	}
	if st := h.p.Stats(); st.Armed != 0 || st.Disarming != 0 {
		h.t.Fatalf("Stats().Armed = %d, Disarming = %d at the end", st.Armed, st.Disarming)
	}
}

// close forgets and closes the model's fds, leaving the poller clean for the
// next run.
func (m *model) close() {
	*m.next = m.h.nextTag
	for _, s := range m.slots {
		m.h.p.Forget(s.a)
	}
	for fd := range m.h.open {
		unix.Close(fd)
	}
	if !m.finished {
		m.drainAbandoned()
		return
	}
	if n, err := m.h.p.Wait(m.h.buf, 0); n != 0 || err != nil {
		for _, ev := range m.h.buf[:n] {
			m.h.t.Errorf("after the run: %v (first Event %v, armed %v)", ev, m.h.seen[ev.Tag], m.h.armed[ev.Tag])
		}
		m.h.t.Fatalf("Wait after the run = %d, %v", n, err)
	}
}

// drainAbandoned takes the Events an abandoned run left owed, so that the
// next run starts on a clean poller.
func (m *model) drainAbandoned() {
	deadline := time.Now().Add(5 * time.Second)
	for m.h.p.Stats().Armed > 0 && time.Now().Before(deadline) {
		if _, err := m.h.p.Wait(m.h.buf, 10*time.Millisecond); err != nil {
			m.h.t.Fatalf("Wait after an abandoned run: %v", err)
		}
	}
}
