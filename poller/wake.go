//go:build linux

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
// true writes the eventfd. The owner drains the eventfd and only then clears
// pending (ack). A Wake that finds pending set before the clear is covered by
// the Wait that is returning; one after the clear writes again. Clearing
// first would be wrong: a Wake between the clear and the read would set
// pending and have its write drained, leaving pending set with nothing to
// read, and every later Wake would be swallowed.
type waker struct {
	fd int // constant after newWaker; closed by close under mu

	pending atomic.Bool // atomic: a write is in flight or unconsumed

	mu     sync.RWMutex // guards closed against close(fd) racing a write
	closed bool         // guarded by mu

	// inAck, when set (tests only), runs between ack's two steps, where a
	// racing Wake may land. Constant after newWaker.
	inAck func()
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

// ack consumes the wake-ups seen by the owner: the eventfd is drained, then
// pending cleared (see waker for why in this order). It returns the number
// of system calls made.
func (w *waker) ack() uint64 {
	var buf [8]byte
	for {
		_, err := unix.Read(w.fd, buf[:])
		if err != unix.EINTR {
			// EAGAIN cannot happen (the owner saw it readable and is
			// the only reader); nothing else can fail on a valid
			// eventfd with an 8-byte buffer.
			break
		}
	}
	if w.inAck != nil {
		w.inAck()
	}
	w.pending.Store(false) // must be the last step
	return 1
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
