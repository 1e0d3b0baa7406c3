//go:build linux

package ring

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GetSQE returns the next free submission entry, zeroed (a zeroed SQE is a
// NOP with user_data 0). It returns ErrSQFull when every slot holds a
// request the kernel has not consumed yet: Submit first. It never
// overwrites a pending entry.
func (r *Ring) GetSQE() (*SQE, error) {
	if r.closed {
		return nil, ErrClosed
	}
	// The acquire pairs with the kernel's release of the SQ head: once we
	// see a slot consumed, the kernel no longer reads it.
	if r.sqeTail-loadAcquire(r.kSQHead) >= r.sqEntries {
		return nil, ErrSQFull
	}
	s := &r.staged[r.sqeTail&r.sqMask]
	*s = SQE{}
	r.sqeTail++
	return s, nil
}

// SQReady returns how many SQEs were handed out by GetSQE and not yet
// consumed by the kernel.
func (r *Ring) SQReady() uint32 {
	if r.closed {
		return 0
	}
	return r.sqeTail - loadAcquire(r.kSQHead)
}

// CQReady returns how many CQEs are posted and not yet reaped.
func (r *Ring) CQReady() uint32 {
	if r.closed {
		return 0
	}
	return loadAcquire(r.kCQTail) - r.cqHead
}

// flush copies the prepared SQEs into the shared array, publishes the new
// SQ tail, and returns how many published SQEs the kernel has not consumed.
func (r *Ring) flush() uint32 {
	if r.sqeFlushed != r.sqeTail {
		for i := r.sqeFlushed; i != r.sqeTail; i++ {
			r.kSQEs[i&r.sqMask] = r.staged[i&r.sqMask].raw
		}
		r.sqeFlushed = r.sqeTail
		// Release: the SQE contents above must be visible before the
		// kernel's acquire of the tail lets it read them.
		storeRelease(r.kSQTail, r.sqeTail)
	}
	return r.sqeTail - loadAcquire(r.kSQHead)
}

// cqNeedsFlush reports whether the kernel holds completions it has not
// posted to the CQ yet: CQEs on its overflow list, or (SetupTaskrunFlag
// rings) pending task work. An io_uring_enter with GETEVENTS moves them.
func (r *Ring) cqNeedsFlush() bool {
	return loadRelaxed(r.kSQFlags)&(sqCQOverflow|sqTaskrun) != 0
}

// enter calls io_uring_enter. wait selects the blocking syscall entry (the
// Go scheduler hands the P to another thread); calls that cannot sleep, and
// SubmitAndWaitHeld's, use the cheaper raw entry. extArg passes r.waitArg (IORING_ENTER_EXT_ARG).
func (r *Ring) enter(toSubmit, minComplete, flags uint32, extArg, wait bool) (int, unix.Errno) {
	r.enters.Add(1)
	var arg, argSz uintptr
	if extArg {
		flags |= enterExtArg
		arg, argSz = uintptr(unsafe.Pointer(&r.waitArg)), unsafe.Sizeof(r.waitArg)
	}
	var n uintptr
	var errno unix.Errno
	if wait {
		n, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(minComplete), uintptr(flags), arg, argSz)
	} else {
		n, _, errno = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(minComplete), uintptr(flags), arg, argSz)
	}
	return int(n), errno
}

// enterError wraps an io_uring_enter errno for the caller.
func enterError(errno unix.Errno) error {
	if errno == unix.EBUSY {
		return fmt.Errorf("ring: io_uring_enter: completions are waiting on the overflow list; "+
			"Reap, then submit again (nothing was dropped): %w", errno)
	}
	return fmt.Errorf("ring: io_uring_enter: %w", errno)
}

// Submit hands every prepared SQE to the kernel without waiting and returns
// how many the kernel consumed. The kernel stops at an SQE it cannot
// prepare (unless SetupSubmitAll): that one completes with an error CQE,
// and the ones after it stay queued (SQReady) for the next call. Submit
// also lets the kernel flush completions held on its overflow list. EINTR
// is retried. An error wrapping EBUSY means nothing was submitted because
// completions are waiting: Reap, then Submit again; the SQEs stay queued.
func (r *Ring) Submit() (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	n := r.flush()
	var flags uint32
	if r.cqNeedsFlush() {
		flags = enterGetEvents
	}
	if n == 0 && flags == 0 {
		return 0, nil
	}
	got, errno := r.enterNow(n, flags)
	if errno != 0 {
		return 0, enterError(errno)
	}
	return got, nil
}

// enterNow is an io_uring_enter that does not wait, retried on EINTR.
func (r *Ring) enterNow(toSubmit, flags uint32) (int, unix.Errno) {
	for {
		got, errno := r.enter(toSubmit, 0, flags, false, false)
		if errno != unix.EINTR {
			return got, errno
		}
	}
}

// SubmitAndWait submits every prepared SQE, then waits until at least
// minComplete CQEs are ready to Reap or the timeout passes, and returns how
// many SQEs the kernel consumed.
//
// timeout < 0 waits without limit; timeout == 0 does not wait (but, unlike
// Submit, always lets the kernel post deferred completions, which a
// SetupDeferTaskrun ring needs); timeout > 0 bounds the wait, with
// IORING_ENTER_EXT_ARG (no SQE consumed) or, on kernels without
// FeatExtArg, a TIMEOUT SQE with user_data TimeoutUserData.
//
// A timeout is not an error: it returns nil and the caller reaps whatever
// is ready. EINTR is retried for the remaining time. minComplete above the
// CQ size is treated as the CQ size. An error wrapping EBUSY, returned only
// when no CQE is ready, means the kernel refused to submit until its
// overflow list drains; when CQEs are ready it returns nil instead, with
// the SQEs still queued, and the caller reaps.
func (r *Ring) SubmitAndWait(minComplete uint32, timeout time.Duration) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	minComplete = min(minComplete, r.cqEntries)
	if minComplete == 0 || timeout == 0 {
		return r.submitNoWait()
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
		if r.noExtArg {
			return r.waitWithTimeoutSQE(minComplete, deadline)
		}
	}
	submitted := 0
	for {
		n := r.flush()
		ext := false
		if timeout > 0 {
			rem := time.Until(deadline)
			if rem <= 0 {
				return submitted, nil
			}
			r.waitTS = kernelTimespec{sec: int64(rem / time.Second), nsec: int64(rem % time.Second)}
			ext = true
		}
		got, errno := r.enter(n, minComplete, enterGetEvents, ext, true)
		switch errno {
		case 0:
			submitted += got
		case unix.EINTR:
		case unix.ETIME:
			return submitted, nil
		case unix.EBUSY:
			if r.CQReady() > 0 {
				return submitted, nil
			}
			return submitted, enterError(errno)
		default:
			return submitted, enterError(errno)
		}
		// The kernel returns the submit count and drops the wait's own
		// result (a signal, an expiry) when it submitted anything: check.
		if r.CQReady() >= minComplete {
			return submitted, nil
		}
	}
}

// SubmitAndWaitHeld is SubmitAndWait made through the raw system-call
// entry: the Go scheduler is not told that the thread sleeps, so the
// calling goroutine keeps its P throughout, and no other thread is woken to
// take the P over or hand it back. That handover is what the ordinary entry
// costs a goroutine that waits after every message (sysmon hands the P of a
// thread in a system call to another thread, and this one must win it back
// when the call returns), and it is most of what separates a Go loop that
// waits in io_uring_enter from a C one.
//
// The P is held, so the caller must be a goroutine that does nothing but
// serve the ring: goroutines queued on that P run when the wait ends or
// when the runtime preempts the caller. The runtime preempts by a signal,
// which ends the wait: SubmitAndWaitHeld then returns nil and whatever is
// ready, rather than waiting on, so that the caller reaches a preemption
// point. Where the runtime does not preempt by signal (a non-zero GODEBUG
// asyncpreemptoff, gccheckmark, or SIGURG ignored) only the timeout ends
// the wait, and it bounds how long a stop-the-world waits for the caller. A timeout < 0 waits without one;
// 0 does not wait. Kernels without FeatExtArg wait through SubmitAndWait.
func (r *Ring) SubmitAndWaitHeld(minComplete uint32, timeout time.Duration) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	minComplete = min(minComplete, r.cqEntries)
	if minComplete == 0 || timeout == 0 || (timeout > 0 && r.noExtArg) {
		return r.SubmitAndWait(minComplete, timeout)
	}
	n := r.flush()
	if timeout > 0 {
		r.waitTS = kernelTimespec{sec: int64(timeout / time.Second), nsec: int64(timeout % time.Second)}
	}
	got, errno := r.enter(n, minComplete, enterGetEvents, timeout > 0, false)
	switch errno {
	case 0:
		return got, nil
	case unix.EINTR, unix.ETIME:
		return 0, nil
	case unix.EBUSY:
		if r.CQReady() > 0 {
			return 0, nil
		}
	}
	return 0, enterError(errno)
}

// submitNoWait submits and runs deferred completion work without sleeping.
func (r *Ring) submitNoWait() (int, error) {
	n := r.flush()
	var flags uint32
	if r.flags&SetupDeferTaskrun != 0 || r.cqNeedsFlush() {
		flags = enterGetEvents
	}
	if n == 0 && flags == 0 {
		return 0, nil
	}
	got, errno := r.enterNow(n, flags)
	switch {
	case errno == 0:
		return got, nil
	case errno == unix.EBUSY && r.CQReady() > 0:
		return 0, nil
	}
	return 0, enterError(errno)
}

// waitWithTimeoutSQE is SubmitAndWait's timed wait for kernels without
// FeatExtArg: each turn queues a TIMEOUT that fires at the deadline or
// completes as soon as one other CQE is posted (count 1, so a timer does
// not outlive the wait by more than one completion), and sleeps until one
// more CQE arrives. The clock, not the timer's CQE, decides when time is
// up, so a late timer from an earlier call cannot end this wait early.
func (r *Ring) waitWithTimeoutSQE(minComplete uint32, deadline time.Time) (int, error) {
	submitted := 0
	for {
		// The timer below ends the wait only at one more CQE or at the
		// deadline, so a wait already satisfied must not queue one: it
		// would sleep out the timeout where EXT_ARG returns at once.
		rem := time.Until(deadline)
		if rem <= 0 || r.userCQReady() >= minComplete {
			n, err := r.submitNoWait()
			return submitted + n, err
		}
		s, err := r.GetSQE()
		if errors.Is(err, ErrSQFull) {
			n, err := r.Submit()
			submitted += n
			if err != nil {
				return submitted, err
			}
			if s, err = r.GetSQE(); err != nil {
				return submitted, err
			}
		}
		ts := unix.NsecToTimespec(int64(rem))
		s.PrepTimeout(&ts, 1, 0, TimeoutUserData)
		r.sawInternal = true
		n := r.flush()
		want := min(r.CQReady()+1, r.cqEntries)
		got, errno := r.enter(n, want, enterGetEvents, false, true)
		switch errno {
		case 0:
			submitted += got
		case unix.EINTR, unix.ETIME:
		case unix.EBUSY:
			if r.CQReady() > 0 {
				return submitted, nil
			}
			return submitted, enterError(errno)
		default:
			return submitted, enterError(errno)
		}
		if r.userCQReady() >= minComplete || !time.Now().Before(deadline) {
			return submitted, nil
		}
	}
}

// userCQReady counts ready CQEs that are not SubmitAndWait's own timers.
func (r *Ring) userCQReady() uint32 {
	tail := loadAcquire(r.kCQTail)
	var n uint32
	for h := r.cqHead; h != tail; h++ {
		if r.cqes[h&r.cqMask].UserData != TimeoutUserData {
			n++
		}
	}
	return n
}

// Reap copies up to len(cqes) ready CQEs into cqes, marks them consumed
// with a single store of the CQ head, and returns how many it copied. It
// never blocks and does not allocate. When the kernel holds completions on
// its overflow list (or, with SetupTaskrunFlag, pending task work) and
// cqes has room left, Reap makes one non-waiting io_uring_enter to have
// them posted and copies those too.
//
// On a SetupDeferTaskrun ring without SetupTaskrunFlag, completions are
// posted only by SubmitAndWait on the owning thread; Reap returns what
// those calls posted.
func (r *Ring) Reap(cqes []CQE) int { return r.reap(cqes, true) }

// ReapPosted is Reap without the enter: it copies only what the CQ holds
// now, and leaves the kernel's overflow list and pending task work to the
// caller's next io_uring_enter with IORING_ENTER_GETEVENTS (a
// SubmitAndWait that waits; on a SetupDeferTaskrun ring, or with either
// flagged, one that does not; or a later Reap). A caller about to submit
// takes what was posted and what the submit posts in one system call
// instead of two.
func (r *Ring) ReapPosted(cqes []CQE) int { return r.reap(cqes, false) }

func (r *Ring) reap(cqes []CQE, flush bool) int {
	if r.closed {
		return 0
	}
	n := 0
	for flushed := !flush; ; flushed = true {
		head := r.cqHead
		// Acquire pairs with the kernel's release of the CQ tail: the
		// entries below it are fully written.
		tail := loadAcquire(r.kCQTail)
		for head != tail && n < len(cqes) {
			c := &r.cqes[head&r.cqMask]
			head++
			if r.sawInternal && c.UserData == TimeoutUserData {
				continue
			}
			cqes[n] = *c
			n++
		}
		if head != r.cqHead {
			r.cqHead = head
			// Release: our copies are done before the kernel may reuse
			// the slots.
			storeRelease(r.kCQHead, head)
		}
		if n == len(cqes) || flushed || !r.cqNeedsFlush() {
			return n
		}
		// Best effort: what the enter fails to post stays flagged, and
		// the next Reap or Submit asks again.
		r.enterNow(0, enterGetEvents)
	}
}
