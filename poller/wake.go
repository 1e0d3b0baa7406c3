package poller

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// waker is the eventfd both backends watch so that any goroutine can end a
// blocking Wait.
//
// Wakes coalesce through pending: only the Wake that turns it from false to
// true writes the eventfd. The owner clears pending before it drains the
// eventfd (ack), so a Wake that finds pending already set is covered by a
// Wait that has not yet returned.
type waker struct {
	fd int // constant after newWaker; closed by close under mu

	pending atomic.Bool // atomic: a write is in flight or unconsumed

	mu     sync.RWMutex // guards closed against close(fd) racing a write
	closed bool         // guarded by mu
}

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("poller: eventfd: %w", err)
	}
	return &waker{fd: fd}, nil
}

// wake is Poller.Wake. The read lock keeps close from freeing the fd number
// while a write is on its way to it.
func (w *waker) wake() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	if w.pending.Swap(true) {
		return nil
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	for {
		_, err := unix.Write(w.fd, one[:])
		switch err {
		case nil, unix.EAGAIN: // EAGAIN: the counter is saturated, still readable
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("poller: wake: %w", err)
	}
}

// ack consumes the wake-ups seen by the owner: pending is cleared first, so
// a Wake after this point writes again and is not lost. It returns the
// number of system calls made.
func (w *waker) ack() uint64 {
	w.pending.Store(false)
	var buf [8]byte
	for {
		_, err := unix.Read(w.fd, buf[:])
		if err != unix.EINTR {
			// EAGAIN: a racing ack already drained it; nothing else
			// can fail on a valid eventfd with an 8-byte buffer.
			return 1
		}
	}
}

func (w *waker) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if err := unix.Close(w.fd); err != nil {
		return fmt.Errorf("poller: close eventfd: %w", err)
	}
	return nil
}
