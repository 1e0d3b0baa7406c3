//go:build linux

package reactor

// timerObj is what a timer fires into. seq lets the owner recognise and
// ignore an entry it has since superseded. An owner that gives an idx keeps
// one entry at a time and removes it when done (a Conn: a closed Conn's
// entry would otherwise hold it in memory until due, up to an IdleTimeout
// later); one that gives none leaves superseded entries to expire (a
// listener socket's backoff: at most 500 ms).
type timerObj interface {
	fire(l *loop, seq uint64, now int64)
}

// timerEntry is one deadline on a loop's heap.
type timerEntry struct {
	when int64     // nanotime()
	seq  uint64    // obj's own generation for this entry
	obj  timerObj  // nil: a request deadline for h
	h    reqHandle // the request whose deadline this is (obj == nil)
	idx  *int32    // obj's record of the entry's index+1, kept by the heap; may be nil
}

// timerHeap is a binary min-heap of deadlines, owned by the loop goroutine.
// A request deadline's position is kept in its payload (reqData.timer, index
// + 1) so that delivery removes it at once: a server arming at a high rate
// with long deadlines does not pile up entries for requests long finished.
// It is hand-rolled rather than container/heap so that a push does not box
// the entry into an interface (an allocation per deadline).
type timerHeap []timerEntry

func (h timerHeap) set(i int, e timerEntry) {
	h[i] = e
	switch {
	case e.obj == nil:
		e.h.Data().timer = int32(i + 1)
	case e.idx != nil:
		*e.idx = int32(i + 1)
	}
}

func (h *timerHeap) add(e timerEntry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h timerHeap) up(i int) {
	e := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if h[p].when <= e.when {
			break
		}
		h.set(i, h[p])
		i = p
	}
	h.set(i, e)
}

func (h timerHeap) down(i int) {
	e := h[i]
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r].when < h[l].when {
			m = r
		}
		if e.when <= h[m].when {
			break
		}
		h.set(i, h[m])
		i = m
	}
	h.set(i, e)
}

// remove takes out the entry at i.
func (h *timerHeap) remove(i int) timerEntry {
	s := *h
	e := s[i]
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
	}
	s[last] = timerEntry{}
	s = s[:last]
	*h = s
	if i < last {
		s.down(i)
		s.up(i)
	}
	switch {
	case e.obj == nil:
		e.h.Data().timer = 0
	case e.idx != nil:
		*e.idx = 0
	}
	return e
}

// next returns the earliest deadline, or -1 when there is none.
func (h timerHeap) next() int64 {
	if len(h) == 0 {
		return -1
	}
	return h[0].when
}

// popExpired removes and returns the earliest entry if it is due at now.
func (h *timerHeap) popExpired(now int64) (timerEntry, bool) {
	if len(*h) == 0 || (*h)[0].when > now {
		return timerEntry{}, false
	}
	return h.remove(0), true
}

func (l *loop) addTimer(e timerEntry) { l.timers.add(e) }

// runTimers fires every deadline due at now.
func (l *loop) runTimers(now int64) {
	for {
		e, ok := l.timers.popExpired(now)
		if !ok {
			return
		}
		if e.obj != nil {
			l.enterUser() // a Conn's deadline calls OnClose
			e.obj.fire(l, e.seq, now)
			continue
		}
		// A request deadline: one more canceller, deciding Closed with
		// os.ErrDeadlineExceeded as its meaning. Delivery removes the
		// entry, so h is live here; a Cancel may have won meanwhile.
		h := e.h
		if !h.State().Cancellable() {
			continue
		}
		h.Data().err = errDeadline
		l.act(h, h.Close())
	}
}
