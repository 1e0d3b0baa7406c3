package reactor

// OutBufferCap returns the capacity of c's output buffer: the memory that
// holds its pending output.
func OutBufferCap(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.held()
}

// SendEveryWriteOnRing makes every Write made during a handler call go
// through the ring (where r has ring I/O), not only a busy turn's: the
// tests' io_uring row runs the send path on every Conn.
func SendEveryWriteOnRing(r *Reactor) {
	for _, l := range r.loops {
		l.sendBatch.Store(0)
	}
}

// ShutdownAsked reports whether Close or Shutdown was called on ln (its
// loops are told right after).
func ShutdownAsked(ln *Listener) bool { return ln.closing.Load() }

// Asleep reports whether every loop of r is parked, between turns and
// outside any callback.
func Asleep(r *Reactor) bool {
	for _, l := range r.loops {
		if !l.in.sleeping.Load() || l.inUser.Load() {
			return false
		}
	}
	return true
}

// ListenerStopped reports whether every listening socket of ln is closed.
func ListenerStopped(ln *Listener) bool { return ln.openSocks.Load() == 0 }

// Disarming sums, over r's loops, the requests asked to cancel whose end
// the kernel has not posted (poller.Stats.Disarming), each read on its
// loop; ok is false once r is closed.
func Disarming(r *Reactor) (n int, ok bool) {
	for _, l := range r.loops {
		got := make(chan int, 1)
		if !l.postTask(disarmingReader(got), 0) {
			return 0, false
		}
		n += <-got
	}
	return n, true
}

type disarmingReader chan int

func (c disarmingReader) runTask(l *loop, _ int32) { c <- l.p.Stats().Disarming }
