//go:build linux

package reactor

import (
	"fmt"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
)

// stop is the loop's half of Reactor.Close: every request completes (with
// ErrClosed unless something won first), every listener and connection
// closes, the loop waits for the kernel to post every completion it owes
// (bounded), and the poller is released.
func (l *loop) stop() {
	l.p.Hold(false) // a KernelWait loop's drain waits give the P up
	l.enterUser()   // OnClose and callbacks run from here
	l.stopping = true
	cmds := l.in.take(l.spare, true) // later pushes fail: nothing new arrives
	var live []reqHandle
	l.table.Range(func(h reqHandle, _ cancel.State) bool {
		live = append(live, h)
		return true
	})
	for _, h := range live {
		l.act(h, h.Close())
		// Withdraw also finishes one whose Cancel won but whose withdraw
		// was refused by the closed inbox; a reader's receive is
		// delivered at its end, in the drain below.
		l.act(h, l.withdrawal(h))
	}
	// A Conn whose read is its own receive (conn_table.go), or with no
	// request in flight (its peer's EOF heard by an EOFHandler that has
	// nothing to write), had none for the closes above to end, and one
	// whose request was closed but not yet delivered (a send through the
	// ring, say) ends when the drain below delivers it: each is closed
	// here, as CloseNow would, and its OnClose runs (the late delivery
	// finds it closed).
	for _, c := range l.openConns() {
		c.finish(ErrClosed)
	}
	for i := range cmds {
		l.exec(&cmds[i]) // arms are stolen as Closed; tasks see stopping
	}
	for _, s := range append([]stopper(nil), l.owned...) {
		s.stopOnLoop()
	}
	if l.nServed != 0 {
		panic(fmt.Sprintf("reactor: loop %d stopped with %d Conns open", l.id, l.nServed))
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.p.Stats().Armed > 0 && time.Now().Before(deadline) {
		n, err := l.p.Wait(l.evs, 50*time.Millisecond)
		if err != nil {
			break
		}
		l.handle(n)
	}
	l.kernel.Store(l.p.Stats().Syscalls)
	if err := l.p.Close(); err != nil {
		l.r.cfg.Logger.Sugar().Warnw("reactor: closing poller", "loop", l.id, "err", err)
	}
	for _, h := range live {
		// A receive whose end the kernel did not post in time: the
		// poller is gone, so nothing more is copied; deliver it now.
		if st := h.State(); st.Gen() == h.Gen() && st.Phase() == cancel.OnQueue {
			l.act(h, h.Withdraw())
		}
	}
}
