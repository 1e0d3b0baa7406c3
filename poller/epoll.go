//go:build linux

package poller

import (
	"fmt"
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epoll backend: one EPOLLONESHOT registration per fd whose interest is the
// union of the tags armed on it, or, for an fd whose caller keeps the Edge
// promise, one edge-triggered registration (below).
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
// An Edge arm (the caller arms after EAGAIN and Forgets before close) on an
// unregistered fd makes an edge registration instead: EPOLLET for every
// interest bit, made once and kept until Forget, with no epoll_ctl per arm
// (Go's netpoller registers so). It stays regActive while tags come and go:
//
//	from      | event                          | to        | syscall
//	----------+--------------------------------+-----------+------------------
//	regNone   | Edge arm                       | regActive | ADD (new gen, ET)
//	regIdle   | Edge arm                       | regActive | MOD (new gen, ET)
//	regActive | Edge arm, pending ∩ interest   | regActive | none; Ready now
//	regActive | Edge arm, nothing pending      | regActive | none
//	regActive | harvest                        | regActive | none; the tags the
//	          |                                |           | mask matched get
//	          |                                |           | Ready, bits no tag
//	          |                                |           | took go to pending
//	regActive | arm without Edge               | regActive | MOD (the level is
//	          |                                |           | polled again: a
//	          |                                |           | ready fd fires)
//	regActive | Disarm                         | regActive | none
//	regActive | MOD fails (repoll)             | regNone   | DEL; its tags fail
//	          |                                |           | (ENOENT: the fresh
//	          |                                |           | tag is armed anew)
//	regActive | Edge arm on a level            | regActive | as any arm: the
//	(level)   | registration with tags enabled |           | level path (MOD)
//
// Pending keeps what fired while no tag wanted it, so an edge is never lost
// between a caller's EAGAIN and its arm. Hup stays pending for good (a hung
// up stream stays so); Err does not: a socket error, or an error queue
// (timestamps, zerocopy notices), clears when read, and a kept Err would
// wake every later arm at once, a spin.
//
// The generation in each registration's epoll data (Pad) is new at every ADD:
// a harvested event whose generation is not the fd's current one belongs to
// a registration we deleted or lost (a file closed behind our back whose
// number came back) and is dropped as Stale. Generation 0 marks the eventfd.
// An ADD that finds a registration the poller had dropped (its DEL failed:
// the file, closed behind our back, lived on in another descriptor, and the
// number names it again) takes it over with a MOD (takeOver).
type epollPoller struct {
	epfd int    // constant after newEpoll
	w    *waker // constant after newEpoll
	kev  []unix.EpollEvent

	// Owned by the owner goroutine.
	g       ledger // its fd records (g.fds) hold the registrations
	nextGen uint32
	out     []Event // decided Events not yet returned, oldest first from outHead
	outHead int
	ctlEv   unix.EpollEvent // epoll_ctl argument, kept here so it never escapes per call
	hold    bool            // Hold's: the idle Wait keeps the owner's P (owner only)
	stats   Stats
	closed  bool
	maxFd   int // FdLimit, constant after NewEpoll
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
		maxFd:   FdLimit(),
		kev:     make([]unix.EpollEvent, 128),
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
	if err := checkArm(tag, fd, events, p.maxFd); err != nil {
		return err
	}
	edge := events&Edge != 0
	events &^= Edge
	if r := p.g.fds.find(fd); r != nil && r.reg.full(events) {
		return fmt.Errorf("%w: fd %d, events %#x", ErrTooManyTags, fd, events)
	}
	rec, err := p.g.add(tag, fd, events)
	if err != nil {
		return err
	}
	defer p.g.fds.releaseIfEmpty(fd) // an arm that failed may leave nothing
	reg := p.reg(fd)
	reg.count(events, 1)
	p.stats.Arms++
	p.stats.Armed++
	switch {
	case reg.edge && edge:
		if m := readyMask(events, reg.pending.mask()); m != 0 {
			reg.pending = packEv(reg.pending.mask() &^ (m &^ Hup)) // Hup stays
			p.remove(rec)
			p.emit(Event{Tag: tag, Events: m})
		}
	case reg.edge:
		p.repoll(fd, tag)
	case edge && reg.state != regActive:
		// No other tag enabled on fd (a level registration left idle,
		// as a connect's wait leaves it, or none): go edge from here.
		p.addEdge(fd)
	default:
		p.sync(fd, tag)
	}
	return nil
}

// newGen returns the generation for a new registration: never 0, which
// marks the eventfd.
func (p *epollPoller) newGen() uint32 {
	g := p.nextGen
	if p.nextGen++; p.nextGen == 0 {
		p.nextGen = 1
	}
	return g
}

// edgeMask is what an edge registration is enabled for: every interest,
// so that no arm ever needs to widen it.
const edgeMask = In | Pri | Out | RdHup | unix.EPOLLET

// addEdge makes fd's edge registration, or turns its idle level one into
// it; an error fails the tags on fd. The new generation leaves the old
// registration's reports stale.
func (p *epollPoller) addEdge(fd int) {
	reg := p.reg(fd)
	op := unix.EPOLL_CTL_ADD
	if reg.state == regIdle {
		op = unix.EPOLL_CTL_MOD
	}
	reg.gen = p.newGen()
	reg.mask, reg.edge, reg.pending = packEv(edgeMask), true, 0
	err := p.ctl(op, fd)
	if err == unix.ENOENT && op == unix.EPOLL_CTL_MOD {
		// The idle registration went with its file (closed behind our
		// back); the number names another now: register that.
		err = p.ctl(unix.EPOLL_CTL_ADD, fd)
	}
	if err == unix.EEXIST { // only an ADD says so
		err = p.takeOver(fd)
	}
	if err != nil {
		if op == unix.EPOLL_CTL_MOD {
			p.ctl(unix.EPOLL_CTL_DEL, fd) // leave no half-known registration behind
		}
		*reg = epollReg{n: reg.n}
		p.failAll(fd, 0, err)
		return
	}
	reg.state = regActive
}

// repoll serves an arm without Edge on an edge registration: a MOD polls
// the level again, so a fd that is ready now fires although no new edge
// came. ENOENT means the file was closed behind the registration's back
// (the Edge promise broken): the registration is dropped, the older tags
// fail and fresh is armed on whatever the number names now.
func (p *epollPoller) repoll(fd int, fresh uint64) {
	reg := p.reg(fd)
	err := p.ctl(unix.EPOLL_CTL_MOD, fd)
	switch {
	case err == nil:
	case err == unix.ENOENT:
		*reg = epollReg{n: reg.n}
		p.failAll(fd, fresh, err)
		p.sync(fd, fresh)
	default:
		p.ctl(unix.EPOLL_CTL_DEL, fd) // leave no half-known registration behind
		*reg = epollReg{n: reg.n}
		p.failAll(fd, 0, err)
	}
}

func (p *epollPoller) Disarm(tag uint64) bool {
	if p.closed {
		return false
	}
	rec := p.g.get(tag)
	if rec == nil {
		return false
	}
	fd := int(rec.fd)
	p.remove(rec)
	p.stats.Disarms++
	p.emit(Event{Tag: tag, Canceled: true})
	p.sync(fd, 0)
	p.g.fds.releaseIfEmpty(fd)
	return true
}

func (p *epollPoller) Forget(fd int) {
	if p.closed || !validFd(fd) || p.g.fds.find(fd) == nil {
		return
	}
	for i := p.g.first(fd); i != 0; {
		rec, next := p.g.at(i), p.g.next(i)
		i = next
		tag := rec.tag
		p.remove(rec)
		p.stats.Disarms++
		p.emit(Event{Tag: tag, Canceled: true})
	}
	if p.reg(fd).state != regNone {
		// EBADF/ENOENT here mean the file is already gone, and its
		// registration with it: the goal is reached either way.
		p.ctl(unix.EPOLL_CTL_DEL, fd)
	}
	*p.reg(fd) = epollReg{}
	p.g.fds.releaseIfEmpty(fd)
}

func (p *epollPoller) Hold(held bool) { p.hold = held }

// Gather does nothing: epoll_wait returns at the first event, and cannot
// be asked for a count.
func (p *epollPoller) Gather(int, time.Duration) {}

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
	fd := int(kev.Fd)
	var r *fdRec
	if fd >= 0 {
		r = p.g.fds.find(fd)
	}
	if r == nil || r.reg.gen != gen || r.reg.state != regActive {
		p.stats.Stale++
		return
	}
	if r.reg.edge {
		p.harvestEdge(fd, kev.Events)
		return
	}
	r.reg.state = regIdle // EPOLLONESHOT disabled the whole fd
	for i := p.g.first(fd); i != 0; {
		rec, next := p.g.at(i), p.g.next(i)
		i = next
		if m := readyMask(rec.events(), kev.Events); m != 0 {
			tag := rec.tag
			p.remove(rec)
			p.emit(Event{Tag: tag, Events: m})
		}
	}
	p.sync(fd, 0) // the side that did not fire is re-armed, never lost
	p.g.fds.releaseIfEmpty(fd)
}

// harvestEdge hands an edge registration's report to the tags it
// satisfies and keeps what none of them took for the next arm.
func (p *epollPoller) harvestEdge(fd int, mask uint32) {
	taken := uint32(0)
	for i := p.g.first(fd); i != 0; {
		rec, next := p.g.at(i), p.g.next(i)
		i = next
		if m := readyMask(rec.events(), mask); m != 0 {
			tag := rec.tag
			taken |= m
			p.remove(rec)
			p.emit(Event{Tag: tag, Events: m})
		}
	}
	reg := p.reg(fd)
	reg.pending = packEv(reg.pending.mask() | mask&^taken | mask&Hup)
}

// remove takes rec off the ledger and out of its fd's interest counts.
func (p *epollPoller) remove(rec *tagRec) {
	p.reg(int(rec.fd)).count(rec.events(), math.MaxUint16)
	p.g.remove(rec)
}

// takeOver answers an ADD that found fd registered although the poller had
// dropped its registration: fd was closed behind our back while another
// descriptor (a dup, a forked child) kept its file open, so the DEL that
// dropped it failed (EBADF; the kernel keys a registration by file and
// number), and the number names that file again. MOD makes the kernel's
// registration ours: this generation and mask, the old reports stale.
func (p *epollPoller) takeOver(fd int) error { return p.ctl(unix.EPOLL_CTL_MOD, fd) }

// sync makes fd's registration match its armed tags (see the table above).
// fresh is the tag Arm just added, or 0.
func (p *epollPoller) sync(fd int, fresh uint64) {
	reg := p.reg(fd)
	if reg.edge {
		return // enabled for everything until Forget
	}
	want := reg.want()
	if p.g.first(fd) == 0 {
		if reg.state == regActive {
			p.ctl(unix.EPOLL_CTL_DEL, fd)
			reg.state = regNone
		}
		return
	}
	if reg.state == regActive && reg.mask.mask() == want && fresh == 0 {
		// Arm never takes this shortcut: its epoll_ctl is also how a
		// number that now names another file is noticed (ENOENT below),
		// so a fresh tag never joins a dead file's registration.
		return
	}
	op := unix.EPOLL_CTL_MOD
	if reg.state == regNone {
		op = unix.EPOLL_CTL_ADD
		reg.gen = p.newGen()
	}
	reg.mask = packEv(want)
	err := p.ctl(op, fd)
	if err == unix.EEXIST { // only an ADD says so
		err = p.takeOver(fd)
	}
	switch {
	case err == nil:
		reg.state = regActive
		return
	case op == unix.EPOLL_CTL_MOD && err == unix.ENOENT:
		// The registration vanished with its file (closed behind our
		// back). Tags armed on it fail; a fresh tag is armed on whatever
		// the number names now.
		reg.state = regNone
		p.failAll(fd, fresh, err)
		if p.g.first(fd) != 0 {
			p.sync(fd, fresh)
		}
		return
	case op == unix.EPOLL_CTL_MOD:
		p.ctl(unix.EPOLL_CTL_DEL, fd) // leave no half-known registration behind
	}
	reg.state = regNone
	p.failAll(fd, 0, err)
}

// failAll ends every tag on fd except keep with a Failed Event.
func (p *epollPoller) failAll(fd int, keep uint64, err error) {
	errno, ok := err.(unix.Errno)
	if !ok {
		panic(fmt.Sprintf("poller: epoll_ctl returned a non-errno error %T", err))
	}
	for i := p.g.first(fd); i != 0; {
		rec, next := p.g.at(i), p.g.next(i)
		i = next
		if tag := rec.tag; tag != keep {
			p.remove(rec)
			p.emit(Event{Tag: tag, Errno: errno})
		}
	}
}

func (p *epollPoller) ctl(op int, fd int) error {
	reg := p.reg(fd)
	flags := uint32(unix.EPOLLONESHOT)
	if reg.edge {
		flags = 0 // edgeMask has EPOLLET
	}
	p.ctlEv = unix.EpollEvent{Events: reg.mask.mask() | flags, Fd: int32(fd), Pad: int32(reg.gen)}
	p.stats.Syscalls++
	return unix.EpollCtl(p.epfd, op, fd, &p.ctlEv)
}

// reg returns fd's registration; fd has a record (it has tags, or a
// registration to keep).
func (p *epollPoller) reg(fd int) *epollReg { return &p.g.fds.mustFind(fd).reg }

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
	p.g, p.out = ledger{}, nil
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

// Settle has nothing to wait for: an epoll registration holds no file.
func (p *epollPoller) Settle(time.Duration) error {
	if p.closed {
		return ErrClosed
	}
	return nil
}

// Queued reports Events decided by Disarm, Forget or an Edge arm and not yet
// returned:
// epoll_ctl itself takes effect when made.
func (p *epollPoller) Queued() bool { return p.outHead < len(p.out) }

// epollWait harvests up to want events into p.kev. A look without sleeping
// (ms == 0) takes the raw system-call entry: it cannot block, and the
// blocking entry would wake the Go runtime's sysmon when every P was idle,
// which a loop that parks in the netpoller between messages pays per
// message (see reactor's rawio.go).
func (p *epollPoller) epollWait(want, ms int) (int, error) {
	if ms != 0 && !p.hold {
		return unix.EpollWait(p.epfd, p.kev[:want], ms)
	}
	// A look (ms 0) cannot sleep; a held wait keeps the P (Hold).
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd),
		uintptr(unsafe.Pointer(&p.kev[0])), uintptr(want), uintptr(ms), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
