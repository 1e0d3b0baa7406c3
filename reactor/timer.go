package reactor

// timerObj is what a timer fires into. seq lets the owner recognise and
// ignore an entry it has since superseded (entries are deleted lazily).
type timerObj interface {
	fire(l *loop, seq uint64, now int64)
}

// timerEntry is one deadline on a loop's heap.
type timerEntry struct {
	when int64 // nanotime()
	seq  uint64
	obj  timerObj  // nil: a request deadline for h
	h    reqHandle // the request whose deadline this is (obj == nil)
}

// timerHeap is a binary min-heap of deadlines, owned by the loop goroutine.
// Expired entries are popped in order each turn; an entry whose owner moved
// on is recognised by seq when it fires, so nothing is removed early. It is
// hand-rolled rather than container/heap so that a push does not box the
// entry into an interface (an allocation per deadline).
type timerHeap []timerEntry

func (h *timerHeap) add(e timerEntry) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].when <= s[i].when {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
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
	s := *h
	if len(s) == 0 || s[0].when > now {
		return timerEntry{}, false
	}
	e := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = timerEntry{}
	s = s[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].when < s[m].when {
			m = l
		}
		if r < len(s) && s[r].when < s[m].when {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return e, true
}
