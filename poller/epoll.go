//go:build linux

package poller

import (
	"fmt"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epoll backend: one EPOLLONESHOT registration per fd whose interest is the
// union of the tags armed on it.
//
// An fd's registration is in one of three named states:
//
//	state     | in the epoll set | enabled | tags armed
//	----------+------------------+---------+-----------
//	regNone   | no               | -       | none
//	regIdle   | yes              | no      | none
//	regActive | yes              | mask    | >= 1, mask = union of interests
//
//	from      | event                          | to        | syscall
//	----------+--------------------------------+-----------+------------------
//	regNone   | Arm                            | regActive | ADD (new gen)
//	regIdle   | Arm                            | regActive | MOD
//	regActive | Arm                            | regActive | MOD (also when the
//	          |                                |           | mask is unchanged:
//	          |                                |           | ENOENT reveals a
//	          |                                |           | reused fd number)
//	regActive | harvest (ONESHOT disabled it)  | regIdle   | none; the tags the
//	          |                                |           | mask matched get
//	          |                                |           | Ready, then:
//	regIdle   | tags left (woken, re-queued)   | regActive | MOD
//	regActive | Disarm, tags left              | regActive | MOD if mask shrinks
//	regActive | Disarm of the last tag         | regNone   | DEL
//	any       | Forget                         | gone      | DEL unless regNone
//	any       | epoll_ctl fails                | regNone   | its tags get Failed
//
// The generation in each registration's epoll data (Pad) is new at every ADD:
// a harvested event whose generation is not the fd's current one belongs to
// a registration we deleted or lost (a file closed behind our back whose
// number came back) and is dropped as Stale. Generation 0 marks the eventfd.
type regState uint8

const (
	regNone regState = iota
	regIdle
	regActive
)

// armedTag is one tag armed on an fd.
type armedTag struct {
	tag    uint64
	events uint32
}

// epollFd is the poller's record of one fd. Owned by the owner goroutine.
type epollFd struct {
	fd    int
	gen   uint32 // generation of the current registration; valid unless regNone
	state regState
	mask  uint32     // interest the registration is enabled for in regActive
	tags  []armedTag // armed tags, in arming order; capacity kept on reuse
}

type epollPoller struct {
	epfd int    // constant after newEpoll
	w    *waker // constant after newEpoll
	kev  []unix.EpollEvent

	// Owned by the owner goroutine.
	fds     map[int]*epollFd
	tags    map[uint64]*epollFd
	free    []*epollFd // recycled records, so steady state does not allocate
	nextGen uint32
	out     []Event // decided Events not yet returned, oldest first from outHead
	outHead int
	ctlEv   unix.EpollEvent // epoll_ctl argument, kept here so it never escapes per call
	stats   Stats
	closed  bool
}

// maxHarvest bounds one epoll_wait; a caller's bigger buffer is filled over
// several calls.
const maxHarvest = 4096

// NewEpoll opens the epoll backend.
func NewEpoll() (Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("poller: epoll_create1: %w", err)
	}
	w, err := newWaker()
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	// Level-triggered: the eventfd stays readable until ack drains it.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.fd), Pad: 0}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, w.fd, &ev); err != nil {
		w.close()
		unix.Close(epfd)
		return nil, fmt.Errorf("poller: epoll_ctl(eventfd): %w", err)
	}
	return &epollPoller{
		epfd:    epfd,
		w:       w,
		kev:     make([]unix.EpollEvent, 128),
		fds:     make(map[int]*epollFd),
		tags:    make(map[uint64]*epollFd),
		nextGen: 1,
	}, nil
}

func (p *epollPoller) Backend() Backend { return Epoll }

func (p *epollPoller) Stats() Stats { return p.stats }

func (p *epollPoller) Wake() error { return p.w.wake() }

func (p *epollPoller) Arm(tag uint64, fd int, events uint32) error {
	if p.closed {
		return ErrClosed
	}
	if err := checkArm(tag, fd, events); err != nil {
		return err
	}
	if _, ok := p.tags[tag]; ok {
		return fmt.Errorf("%w: %#x", ErrTagInUse, tag)
	}
	e := p.fds[fd]
	if e == nil {
		e = p.record(fd)
	}
	e.tags = append(e.tags, armedTag{tag: tag, events: events})
	p.tags[tag] = e
	p.stats.Arms++
	p.stats.Armed++
	p.sync(e, tag)
	return nil
}

func (p *epollPoller) Disarm(tag uint64) bool {
	if p.closed {
		return false
	}
	e := p.tags[tag]
	if e == nil {
		return false
	}
	p.take(e, tag)
	p.stats.Disarms++
	p.emit(Event{Tag: tag, Canceled: true})
	p.sync(e, 0)
	return true
}

func (p *epollPoller) Forget(fd int) {
	if p.closed {
		return
	}
	e := p.fds[fd]
	if e == nil {
		return
	}
	for _, t := range e.tags {
		delete(p.tags, t.tag)
		p.stats.Disarms++
		p.emit(Event{Tag: t.tag, Canceled: true})
	}
	e.tags = e.tags[:0]
	if e.state != regNone {
		// EBADF/ENOENT here mean the file is already gone, and its
		// registration with it: the goal is reached either way.
		p.ctl(unix.EPOLL_CTL_DEL, e)
	}
	delete(p.fds, fd)
	p.free = append(p.free, e)
}

func (p *epollPoller) Wait(evs []Event, timeout time.Duration) (int, error) {
	if len(evs) == 0 {
		panic("poller: Wait with an empty buffer")
	}
	if p.closed {
		return 0, ErrClosed
	}
	n := p.drain(evs)
	if n == len(evs) {
		return n, nil
	}
	ms := durationMs(timeout)
	if n > 0 {
		ms = 0
	}
	want := min(len(evs)-n, maxHarvest)
	if want > len(p.kev) {
		p.kev = make([]unix.EpollEvent, want)
	}
	k, err := p.epollWait(want, ms)
	p.stats.Syscalls++
	if err != nil {
		if err == unix.EINTR || n > 0 {
			return n, nil // see Poller.Wait: Events in hand are never lost to an error
		}
		return 0, fmt.Errorf("poller: epoll_wait: %w", err)
	}
	for i := range k {
		p.harvest(&p.kev[i])
	}
	return n + p.drain(evs[n:]), nil
}

// harvest turns one kernel report into Events for the tags it satisfies and
// re-arms the rest.
func (p *epollPoller) harvest(kev *unix.EpollEvent) {
	gen := uint32(kev.Pad)
	if gen == 0 {
		p.stats.Wakes++
		p.stats.Syscalls += p.w.ack()
		return
	}
	e := p.fds[int(kev.Fd)]
	if e == nil || e.gen != gen || e.state != regActive {
		p.stats.Stale++
		return
	}
	e.state = regIdle // EPOLLONESHOT disabled the whole fd
	keep := e.tags[:0]
	for _, t := range e.tags {
		if m := readyMask(t.events, kev.Events); m != 0 {
			delete(p.tags, t.tag)
			p.emit(Event{Tag: t.tag, Events: m})
			continue
		}
		keep = append(keep, t)
	}
	clear(e.tags[len(keep):])
	e.tags = keep
	p.sync(e, 0) // the side that did not fire is re-armed, never lost
}

// sync makes e's registration match its armed tags (see the table above).
// fresh is the tag Arm just added, or 0.
func (p *epollPoller) sync(e *epollFd, fresh uint64) {
	var want uint32
	for _, t := range e.tags {
		want |= t.events
	}
	if len(e.tags) == 0 {
		if e.state == regActive {
			p.ctl(unix.EPOLL_CTL_DEL, e)
			e.state = regNone
		}
		return
	}
	if e.state == regActive && e.mask == want && fresh == 0 {
		// Arm never takes this shortcut: its epoll_ctl is also how a
		// number that now names another file is noticed (ENOENT below),
		// so a fresh tag never joins a dead file's registration.
		return
	}
	op := unix.EPOLL_CTL_MOD
	if e.state == regNone {
		op = unix.EPOLL_CTL_ADD
		e.gen = p.nextGen
		if p.nextGen++; p.nextGen == 0 {
			p.nextGen = 1
		}
	}
	e.mask = want
	err := p.ctl(op, e)
	switch {
	case err == nil:
		e.state = regActive
		return
	case op == unix.EPOLL_CTL_MOD && err == unix.ENOENT:
		// The registration vanished with its file (closed behind our
		// back). Tags armed on it fail; a fresh tag is armed on whatever
		// the number names now.
		e.state = regNone
		p.failAll(e, fresh, err)
		if len(e.tags) > 0 {
			p.sync(e, fresh)
		}
		return
	case op == unix.EPOLL_CTL_MOD:
		p.ctl(unix.EPOLL_CTL_DEL, e) // leave no half-known registration behind
	}
	e.state = regNone
	p.failAll(e, 0, err)
}

// failAll ends every tag on e except keep with a Failed Event.
func (p *epollPoller) failAll(e *epollFd, keep uint64, err error) {
	errno, ok := err.(unix.Errno)
	if !ok {
		panic(fmt.Sprintf("poller: epoll_ctl returned a non-errno error %T", err))
	}
	rest := e.tags[:0]
	for _, t := range e.tags {
		if t.tag == keep {
			rest = append(rest, t)
			continue
		}
		delete(p.tags, t.tag)
		p.emit(Event{Tag: t.tag, Errno: errno})
	}
	clear(e.tags[len(rest):])
	e.tags = rest
}

func (p *epollPoller) ctl(op int, e *epollFd) error {
	p.ctlEv = unix.EpollEvent{Events: e.mask | unix.EPOLLONESHOT, Fd: int32(e.fd), Pad: int32(e.gen)}
	p.stats.Syscalls++
	return unix.EpollCtl(p.epfd, op, e.fd, &p.ctlEv)
}

// take removes tag from e; the caller emits its Event.
func (p *epollPoller) take(e *epollFd, tag uint64) {
	delete(p.tags, tag)
	for i, t := range e.tags {
		if t.tag == tag {
			e.tags = slices.Delete(e.tags, i, i+1) // zeroes the vacated slot
			return
		}
	}
	panic(fmt.Sprintf("poller: tag %#x indexed on fd %d but not armed there", tag, e.fd))
}

func (p *epollPoller) record(fd int) *epollFd {
	var e *epollFd
	if k := len(p.free); k > 0 {
		e = p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
	} else {
		e = &epollFd{}
	}
	*e = epollFd{fd: fd, tags: e.tags[:0]}
	p.fds[fd] = e
	return e
}

// emit queues a decided Event; drain hands queued Events to Wait's caller.
func (p *epollPoller) emit(ev Event) { p.out = append(p.out, ev) }

func (p *epollPoller) drain(evs []Event) int {
	n := copy(evs, p.out[p.outHead:])
	p.outHead += n
	if p.outHead == len(p.out) {
		clear(p.out)
		p.out, p.outHead = p.out[:0], 0
	}
	p.stats.Events += uint64(n)
	p.stats.Armed -= n
	return n
}

func (p *epollPoller) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	p.stats.Dropped += uint64(p.stats.Armed)
	p.stats.Armed = 0
	p.fds, p.tags, p.out, p.free = nil, nil, nil, nil
	var err error
	if cerr := unix.Close(p.epfd); cerr != nil {
		err = fmt.Errorf("poller: close epoll fd: %w", cerr)
	}
	if werr := p.w.close(); werr != nil && err == nil {
		err = werr
	}
	return err
}

func (p *epollPoller) Fd() int { return p.epfd }

// Queued reports Events decided by Disarm or Forget and not yet returned:
// epoll_ctl itself takes effect when made.
func (p *epollPoller) Queued() bool { return p.outHead < len(p.out) }

// epollWait harvests up to want events into p.kev. A look without sleeping
// (ms == 0) takes the raw system-call entry: it cannot block, and the
// blocking entry would wake the Go runtime's sysmon when every P was idle,
// which a loop that parks in the netpoller between messages pays per
// message (see reactor's rawio.go).
func (p *epollPoller) epollWait(want, ms int) (int, error) {
	if ms != 0 {
		return unix.EpollWait(p.epfd, p.kev[:want], ms)
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd),
		uintptr(unsafe.Pointer(&p.kev[0])), uintptr(want), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
