//go:build linux

package poller

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// RingIO is the io_uring backend's I/O path: the kernel reads the socket
// itself, into a buffer the poller lent it, when data arrives, and sends
// from the caller's memory when the socket has room. A connection then
// needs no readiness poll, no read(2) and no write(2) per message (the
// sends of a loop turn go to the kernel in its one io_uring_enter), and a
// receive that waits holds no buffer. Ask for it with Options.Recv;
// RingIOOf says whether the poller has it and why not.
//
// A Send tag has one Event, as a poll does. A Recv tag's Events may be
// many:
//
//	Event                       | meaning
//	----------------------------+---------------------------------------------
//	More, Ready, N > 0, HasBuf  | bytes received; the tag stays armed
//	Ready, N > 0, HasBuf        | bytes received, and the tag ended (the kernel
//	                            | stops a multishot receive at its discretion)
//	Ready, N == 0               | the peer's EOF; the tag ended
//	Failed (Errno)              | the tag ended: a socket error, or ENOBUFS
//	                            | when the owner held every buffer
//	Canceled                    | Disarm or Forget ended it
//
// An Accept tag's Events, likewise, each carry one connection until the
// last:
//
//	Event                       | meaning
//	----------------------------+---------------------------------------------
//	More, Ready, HasFd, N       | fd N accepted; the tag stays armed
//	Ready, HasFd, N             | fd N accepted, and the tag ended
//	Failed (Errno)              | the tag ended: EMFILE, ENFILE, ENOMEM, ...
//	Canceled                    | Disarm or Forget ended it
//
// Where the kernel consumes buffers incrementally (RecvOptions,
// Incremental) an Event lends only the piece of its buffer it filled
// (Bytes knows where it starts), receives share a buffer, and the buffer
// goes back to the kernel when the kernel has filled it and every piece
// was released; a receive of 0 bytes lends nothing.
//
// Exactly one Event without More ends every Recv that Recv accepted, so a
// tag's end is still reported exactly once, and the tag may be armed again
// after it. Every Event with HasBuf lends its buffer to the caller, who
// reads it with Bytes and gives it back with Release exactly once (a
// second Release, or one for an Event that lent nothing, panics: it would
// let the kernel write into bytes being read). Disarm does not lose bytes:
// a receive that completed before the cancel reached the kernel still
// comes out with its buffer, before the tag's end.
type RingIO interface {
	// Recv arms a receive on fd under tag (the rules of Arm): multishot,
	// or ending after one buffer, which bounds what it takes from the
	// socket before the caller can stop it.
	Recv(tag uint64, fd int, multishot bool) error
	// RecvAtMost arms a one-shot receive of at most max bytes (max > 0)
	// on fd under tag: its one Event carries min(max, a buffer) bytes at
	// most, so a reader that can hold only max is never handed more. It
	// is for a caller that just found the socket empty: the kernel waits
	// for readiness before it tries (POLL_FIRST). Its buffer is a whole
	// one (from a few of its own where Recv's are Incremental: see
	// ring.BufRing), so fewer than min(max, a buffer) bytes mean the
	// socket held no more.
	RecvAtMost(tag uint64, fd int, max int) error
	// Bytes returns the N bytes ev's buffer holds, valid until Release.
	Bytes(ev *Event) []byte
	// Release gives ev's buffer back to the kernel.
	Release(ev *Event)
	// Held returns how many buffers the caller holds: lent by an Event
	// and not yet released (pieces of buffers, where Incremental).
	Held() int
	// Incremental reports whether a receive takes only the part of a
	// buffer it fills (RecvOptions), so that many receives share one.
	Incremental() bool
	// Layout says how the buffers are laid out, for a startup line: their
	// count and size, and how they are consumed.
	Layout() string
	// Limited reports whether a multishot receive ends at
	// RecvOptions.Limit (where the kernel can).
	Limited() bool
	// Accept arms a multishot accept on the listening socket fd under tag
	// (the rules of Arm): each connection the kernel accepts comes in an
	// Event with HasFd, opened non-blocking and close-on-exec, whose
	// descriptor the caller owns from then on, even when the tag was
	// being disarmed. No peer address comes with it (getpeername).
	Accept(tag uint64, fd int) error
	// Send queues a SEND of b on fd under tag (the rules of Arm). The
	// kernel reads b after Send returns: the caller keeps it alive and
	// unchanged until the tag's one Event, Ready with N the bytes sent
	// (perhaps fewer than len(b)), Failed or Canceled (nothing sent). A
	// send to a full socket waits in the kernel for room.
	Send(tag uint64, fd int, b []byte) error
}

// RingIOOf returns p's I/O path, or nil and why there is none.
func RingIOOf(p Poller) (RingIO, string) {
	u, ok := p.(*uringPoller)
	if !ok {
		return nil, "the " + string(p.Backend()) + " backend has no I/O path of its own"
	}
	if u.bufs == nil {
		return nil, u.recvWhy
	}
	return u, ""
}

// ErrNoRingIO refuses Recv and Send on a poller without an I/O path
// (RingIOOf).
var ErrNoRingIO = errors.New("poller: no ring I/O path (see RingIOOf)")

// RecvOptions ask the io_uring backend for a receive path: Buffers
// buffers (a power of two up to 32768) of Size bytes each. With
// Incremental, where the kernel can (Linux 6.12), a receive takes only the
// part of a buffer it fills, the next one continuing in the same buffer
// (ring.BufIncremental), and the same memory is laid out in buffers of
// 64 KiB at least (incShape).
type RecvOptions struct {
	Buffers     int
	Size        int
	Incremental bool
	// Limit, where the kernel has it (recvLimitSupport), ends a multishot
	// receive once it has received Limit bytes in all (up to a buffer
	// more), so that one armed against a peer that floods takes that
	// much before its owner can stop it, not a turn's worth of buffers;
	// the owner arms the next. 0: no limit. RingIO.Limited says whether
	// it holds.
	Limit int
}

// recvGroup is the buffer group id of a poller's receive buffers: each
// ring has its own groups, and a poller registers one.
const recvGroup = 1

// recvSupport decides from the kernel's probe whether the receive path can
// run, and says why not. It is the probe's hook for tests: a kernel
// without an opcode is a probe that says so.
func recvSupport(supports func(ring.Opcode) bool) (bool, string) {
	switch {
	case !supports(ring.OpRecv):
		return false, "the kernel lacks IORING_OP_RECV (Linux 5.6)"
	case !supports(ring.OpSendZC):
		// Multishot RECV came in Linux 6.0 with SEND_ZC, whose probe
		// bit stands for it (ring.SupportsRecvMultishot).
		return false, "the kernel lacks multishot RECV (Linux 6.0)"
	}
	return true, ""
}

// setupRecv gives p a receive path if opts asks for one and the kernel has
// it; otherwise it records why not, and p serves by readiness polls.
// Options the kernel refuses for another reason than memory are an error,
// and so is a ring that fails its probe.
func (p *uringPoller) setupRecv(opts RecvOptions, pr *ring.Probe) error {
	if opts.Buffers == 0 {
		p.recvWhy = "no receive buffers asked for"
		return nil
	}
	if ok, why := recvSupport(pr.Supports); !ok {
		p.recvWhy = why
		return nil
	}
	b, why, err := recvBufs(opts, func(flags ring.BufRingFlags) (*ring.BufRing, error) {
		count, size := opts.Buffers, opts.Size
		if flags&ring.BufIncremental != 0 {
			count, size = incShape(count, size)
		}
		return p.r.RegisterBufRing(recvGroup, count, size, flags)
	})
	if err != nil {
		return err
	}
	p.bufs, p.bounded, p.recvWhy = b, b, why
	if b != nil && opts.Limit > 0 {
		ok, why, err := recvLimitSupport(p.r, recvGroup+2)
		if err != nil {
			b.Close()
			p.bufs, p.bounded = nil, nil
			return err
		}
		if ok {
			p.recvLimit = uint32(min(opts.Limit, math.MaxInt32))
		} else {
			p.limitWhy = why
		}
	}
	if b == nil || !b.Incremental() {
		return nil
	}
	// Receives that must stay within opts.Size take whole buffers of
	// their own: see bounded. Each holds one only until the loop copied
	// the bytes out, so a few suffice; untouched, they cost no resident
	// memory.
	n := min(opts.Buffers, boundedBuffers)
	p.bounded, err = p.r.RegisterBufRing(recvGroup+1, n, opts.Size, 0)
	if err != nil {
		b.Close()
		p.bufs, p.bounded = nil, nil
		if !memoryRefused(err) {
			return fmt.Errorf("poller: receive buffers: %w", err)
		}
		p.recvWhy = refusedWhy(n, opts.Size, err)
	}
	return nil
}

// boundedBuffers bounds the count of the bounded ring's own buffers (where
// the receive path's are incremental).
const boundedBuffers = 64

// incBufSize is the size of an incremental ring's buffers when the
// options ask for smaller ones: incShape. Not larger: a receive brings at
// most a buffer, and a Conn's pause on MaxPending is bounded by one read
// of 64 KiB.
const incBufSize = 64 << 10

// incShape returns the count and size of an incremental ring holding the
// memory of count buffers of size bytes. In an incremental ring a message
// that reaches the end of a buffer arrives in two pieces, two receives
// and two completions; with 16 KiB buffers almost every 16 KiB message
// did once the pieces no longer lined up with the buffers (echod at 50 ×
// 16 KiB: 22% more CPU a message than whole buffers), with 64 KiB buffers
// one in four does (10%; 3% with 256 KiB). Small rings (under 64 KiB in
// all) keep their shape.
func incShape(count, size int) (int, int) {
	if size >= incBufSize || count*size < incBufSize {
		return count, size
	}
	n := count * size / incBufSize
	return 1 << (bits.Len(uint(n)) - 1), incBufSize
}

// recvBufs registers the receive buffers with register (the ring's
// RegisterBufRing, whose answers are the kernel's: the hook for tests),
// to be consumed incrementally where opts asks for it and the kernel can,
// else whole. On a kernel without buffer rings, or where their memory is
// refused (the mmap, or the pages pinned: memoryRefused), it returns no
// ring and why: the poller then serves by readiness polls, as
// Options.Recv promises where the kernel cannot receive into buffers,
// rather than leave io_uring. Any other refusal is an error.
func recvBufs(opts RecvOptions, register func(ring.BufRingFlags) (*ring.BufRing, error)) (*ring.BufRing, string, error) {
	var b *ring.BufRing
	err := ring.ErrBufIncUnsupported
	if opts.Incremental {
		b, err = register(ring.BufIncremental)
	}
	if errors.Is(err, ring.ErrBufIncUnsupported) {
		b, err = register(0)
	}
	switch {
	case errors.Is(err, ring.ErrBufRingUnsupported):
		return nil, err.Error(), nil
	case memoryRefused(err):
		return nil, refusedWhy(opts.Buffers, opts.Size, err), nil
	case err != nil:
		return nil, "", fmt.Errorf("poller: receive buffers: %w", err)
	}
	return b, "", nil
}

// memoryRefused reports a refusal of receive buffers for the memory they
// take (the mmap, or the pages the kernel pins): a limit of this process
// or host, where the receive path is left out. Any other refusal (bad
// options) is an error.
func memoryRefused(err error) bool {
	return errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS)
}

// refusedWhy says why receive buffers the kernel refused leave no
// receive path.
func refusedWhy(n, size int, err error) string {
	return fmt.Sprintf("the kernel refused %d receive buffers of %d bytes (%v)", n, size, err)
}

// ioReady refuses ring I/O on a closed poller or one without the path.
func (p *uringPoller) ioReady() error {
	switch {
	case p.closed:
		return ErrClosed
	case p.bufs == nil:
		return ErrNoRingIO
	}
	return nil
}

func (p *uringPoller) Recv(tag uint64, fd int, multishot bool) error {
	if err := p.ioReady(); err != nil {
		return err
	}
	s, err := p.slot(tag, fd, 0)
	if err != nil {
		return err
	}
	kind := kindRecv
	if !multishot {
		kind = kindRecvBounded
	}
	s.PrepRecvSelect(int32(fd), p.ringOf(!multishot).Group(), multishot, tag)
	if multishot && p.recvLimit > 0 {
		s.SetRecvLimit(p.recvLimit)
	}
	p.book(tag, fd, 0, kind)
	return nil
}

func (p *uringPoller) Limited() bool { return p.recvLimit > 0 }

// recvLimitSupport is the probe of RecvOptions.Limit, a variable so that
// tests can stand for a kernel without it.
var recvLimitSupport = probeRecvLimit

// probeRecvLimit reports whether r's kernel ends a multishot RECV at the
// byte limit of SetRecvLimit: kernels before it fail the RECV with EINVAL.
// On a socketpair holding 128 bytes, a receive limited to 100 bytes in
// 64-byte buffers must end, without MORE, after its second buffer. It
// runs before the poller serves (its CQEs are the probe's alone) and
// leaves nothing armed: a kernel that ignored the limit, or is slow to
// answer, sees the pair closed and ends the receive at EOF. It fails only
// if even that never comes, when the ring cannot serve: a CQE of the
// probe's could come at any time after.
func probeRecvLimit(r *ring.Ring, group uint16) (bool, string, error) {
	b, err := r.RegisterBufRing(group, 4, 64, 0)
	if err != nil {
		return false, "no buffer ring for the probe: " + err.Error(), nil
	}
	defer b.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, "no socketpair for the probe: " + err.Error(), nil
	}
	closed := false
	closePair := func() {
		if !closed {
			unix.Close(fds[0])
			unix.Close(fds[1])
			closed = true
		}
	}
	defer closePair()
	if _, err := unix.Write(fds[1], make([]byte, 128)); err != nil {
		return false, "probe write: " + err.Error(), nil
	}
	s, err := r.GetSQE()
	if err != nil {
		return false, "probe: " + err.Error(), nil
	}
	s.PrepRecvSelect(int32(fds[0]), group, true, 1)
	s.SetRecvLimit(100)
	got, ended, res := 0, false, int32(0)
	cqes := make([]ring.CQE, 8)
	start := time.Now()
	for !ended {
		switch waited := time.Since(start); {
		case waited > 5*time.Second:
			return false, "", errors.New("poller: the receive-limit probe's RECV did not end within 5s, 4s after its socket was closed")
		case waited > time.Second:
			closePair() // slow: end it at EOF
		}
		if _, err := r.SubmitAndWait(1, 100*time.Millisecond); err != nil && !errors.Is(err, unix.ETIME) && !errors.Is(err, unix.EINTR) {
			return false, "", fmt.Errorf("poller: receive-limit probe: %w", err)
		}
		for _, c := range cqes[:r.Reap(cqes)] {
			if id, ok := c.Buffer(); ok {
				b.Take(id, int(max(c.Res, 0)), false)
				b.Put(id, 0)
			}
			if c.Res > 0 {
				got++
			}
			if !c.More() {
				ended, res = true, c.Res
			} else if got >= 2 {
				closePair() // the limit was ignored: end it at EOF
			}
		}
	}
	switch {
	case res == -int32(unix.EINVAL):
		return false, "the kernel has no byte limit for multishot receives (IORING_RECV_MSHOT_LIM)", nil
	case res > 0 && got == 2: // an end at EOF, after the close, brings 0
		return true, "", nil
	}
	return false, fmt.Sprintf("the kernel did not end a limited multishot receive at its limit (%d receives, last %d)", got, res), nil
}

func (p *uringPoller) RecvAtMost(tag uint64, fd int, max int) error {
	if err := p.ioReady(); err != nil {
		return err
	}
	if max <= 0 || max > math.MaxUint32 {
		return fmt.Errorf("poller: RecvAtMost of %d bytes on fd %d", max, fd)
	}
	s, err := p.slot(tag, fd, 0)
	if err != nil {
		return err
	}
	s.PrepRecvSelectMax(int32(fd), p.bounded.Group(), uint32(max), true, tag)
	p.book(tag, fd, 0, kindRecvBounded)
	return nil
}

func (p *uringPoller) Send(tag uint64, fd int, b []byte) error {
	if err := p.ioReady(); err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("poller: Send of nothing on fd %d", fd)
	}
	s, err := p.slot(tag, fd, 0)
	if err != nil {
		return err
	}
	s.PrepSend(int32(fd), b, unix.MSG_NOSIGNAL, tag)
	p.book(tag, fd, 0, kindSend)
	return nil
}

func (p *uringPoller) Bytes(ev *Event) []byte {
	if !ev.HasBuf {
		return nil
	}
	return p.ringOf(ev.bounded).Bytes(ev.Buf, int(ev.Off), int(ev.N))
}

func (p *uringPoller) Release(ev *Event) {
	if !ev.HasBuf {
		panic(fmt.Sprintf("poller: Release of %v, which lent no buffer", *ev))
	}
	p.ringOf(ev.bounded).Put(ev.Buf, int(ev.Off))
	ev.HasBuf = false // a copy released again still panics, in Put
}

// ringOf returns the bounded ring or the receive path's own: the one a
// receive of kindRecvBounded selects from, and its Events' buffers belong
// to (Event.bounded).
func (p *uringPoller) ringOf(bounded bool) *ring.BufRing {
	if bounded {
		return p.bounded
	}
	return p.bufs
}

func (p *uringPoller) Held() int {
	switch {
	case p.bufs == nil:
		return 0
	case p.bounded != p.bufs:
		return p.bufs.Held() + p.bounded.Held()
	}
	return p.bufs.Held()
}

func (p *uringPoller) Incremental() bool { return p.bufs != nil && p.bufs.Incremental() }

func (p *uringPoller) Layout() string {
	var l string
	switch {
	case p.bufs == nil:
		return "no buffers"
	case p.bufs.Incremental():
		l = fmt.Sprintf("%d buffers of %d bytes consumed incrementally, and %d whole ones of %d bytes for bounded receives",
			p.bufs.Count(), p.bufs.Size(), p.bounded.Count(), p.bounded.Size())
	default:
		l = fmt.Sprintf("%d buffers of %d bytes, whole", p.bufs.Count(), p.bufs.Size())
	}
	switch {
	case p.recvLimit > 0:
		l += fmt.Sprintf("; a multishot receive takes %d bytes at most", p.recvLimit)
	case p.limitWhy != "":
		l += "; multishot receives unlimited: " + p.limitWhy
	}
	return l
}

func (p *uringPoller) Accept(tag uint64, fd int) error {
	if err := p.ioReady(); err != nil {
		return err
	}
	s, err := p.slot(tag, fd, 0)
	if err != nil {
		return err
	}
	s.PrepAcceptMultishot(int32(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, tag)
	p.book(tag, fd, 0, kindAccept)
	return nil
}

// completeIO turns a RingIO request's CQE into its Event, in ev: the bytes
// a receive brought (in a buffer it now lends), what a send took, the
// descriptor an accept opened. rec stays armed while the CQE says more
// will follow (a receive's or an accept's; a send's never does).
func (p *uringPoller) completeIO(c *ring.CQE, tag uint64, rec *TagRecord, ev *Event) {
	*ev = Event{Tag: tag, More: c.More()}
	if id, ok := c.Buffer(); ok && (rec.kind() == kindRecv || rec.kind() == kindRecvBounded) {
		ev.bounded = rec.kind() == kindRecvBounded
		off, lent := p.ringOf(ev.bounded).Take(id, int(max(c.Res, 0)), c.BufMore())
		ev.Buf, ev.Off, ev.HasBuf = id, uint32(off), lent
	}
	switch {
	case c.Res >= 0:
		ev.Events, ev.N = In, c.Res
		switch rec.kind() {
		case kindSend:
			ev.Events = Out
		case kindAccept:
			ev.HasFd = true
		}
	case c.Res == -int32(unix.ECANCELED):
		ev.Canceled = true
	default:
		ev.Errno = unix.Errno(-c.Res)
	}
	if !ev.More {
		p.dropRec(tag, rec)
	}
}
