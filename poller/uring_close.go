//go:build linux

package poller

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// closeDrain bounds how long Close waits for the kernel's last completions.
const closeDrain = 5 * time.Second

func (p *uringPoller) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	p.stats.Dropped += uint64(p.stats.Armed)
	p.stats.Armed = 0
	err := p.drainKernel()
	// Events decided and never returned, some reaped to make room for the
	// drain's cancels.
	for i := range p.out {
		closeAccepted(&p.out[i])
	}
	p.out = nil
	if p.bufs != nil && err == nil {
		// After the drain: no receive can still be writing into them.
		// A drain that failed leaves them mapped (leaked): the kernel may
		// still copy into them, and the range must not be reused.
		if berr := p.bufs.Close(); berr != nil {
			err = fmt.Errorf("poller: %w", berr)
		}
		if berr := p.bounded.Close(); berr != nil && err == nil {
			err = fmt.Errorf("poller: %w", berr)
		}
	}
	if cerr := p.r.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("poller: close ring: %w", cerr)
	}
	if werr := p.w.close(); werr != nil && err == nil {
		err = werr
	}
	p.g = ledger{}
	return err
}

// drainKernel removes every poll still in the kernel and waits until the
// kernel has posted every CQE it owes, so no file stays referenced by the
// ring once Close returns.
func (p *uringPoller) drainKernel() error {
	// Listed first: queueing a cancel may reap, which frees records.
	var live []uint64
	if p.ext != nil {
		p.ext.Armed(func(tag uint64) {
			if rec := p.rec(tag); rec != nil && !rec.has(recDisarming) {
				live = append(live, tag)
			}
		})
	}
	for i := 0; i < p.g.tags.Cap(); i++ {
		if rec := p.g.tags.At(i); rec.tag != 0 && !rec.has(recDisarming) {
			live = append(live, rec.tag)
		}
	}
	for _, tag := range live {
		if err := p.cancel(tag); err != nil {
			return err
		}
	}
	if p.wakeArmed {
		if err := p.cancel(udWake); err != nil {
			return err
		}
	}
	settled, err := p.enterUntil(func() bool { return p.owed == 0 }, closeDrain, closeAccepted)
	if err == nil && !settled {
		err = fmt.Errorf("poller: close: the kernel still owes %d completions after %v", p.owed, closeDrain)
	}
	return err
}

// Settle waits until the kernel has ended every request Disarm or Forget
// asked it to cancel: each of them holds its file until then (liburing
// #932). The Events they decide wait in p.out for the next Wait.
func (p *uringPoller) Settle(bound time.Duration) error {
	if p.closed {
		return ErrClosed
	}
	settled, err := p.enterUntil(func() bool { return p.disarming == 0 }, bound, func(ev *Event) { p.out = append(p.out, *ev) })
	if err == nil && !settled {
		err = fmt.Errorf("%w: %d canceled requests not ended after %v", ErrNotSettled, p.disarming, bound)
	}
	return err
}

// enterUntil hands the SQ to the kernel and takes its completions, each
// Event they decide to keep, until done holds (true) or bound has passed
// (false).
func (p *uringPoller) enterUntil(done func() bool, bound time.Duration, keep func(*Event)) (bool, error) {
	deadline := time.Now().Add(bound)
	for !done() {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		// EBUSY: completions wait on the overflow list; the reap below
		// makes room for them.
		if _, err := p.r.SubmitAndWait(1, left); err != nil && !errors.Is(err, unix.EBUSY) {
			return false, p.enterErr(err)
		}
		p.noteSubmitted()
		for {
			k := p.r.Reap(p.cqes)
			for i := range k {
				var ev Event
				if p.complete(&p.cqes[i], &ev) {
					keep(&ev)
				}
			}
			if k < len(p.cqes) {
				break
			}
		}
	}
	return true, nil
}

// closeAccepted closes the connection an Event that no caller will see
// carries, if any: an accept's descriptor is the caller's only once an
// Event hands it over.
func closeAccepted(ev *Event) {
	if ev.HasFd {
		unix.Close(int(ev.N))
	}
}
