//go:build linux

package poller

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// io_uring backend: each Arm is a one-shot IORING_OP_POLL_ADD whose
// user_data is the tag; each Disarm an IORING_OP_ASYNC_CANCEL of that
// user_data. Every SQE the backend prepares yields exactly one CQE (no
// multishot, no CQE_SKIP), so owed counts what the kernel still has to post
// and Close can wait for all of it.
//
// A tag's state, kept in tags:
//
//	state     | meaning                           | next
//	----------+-----------------------------------+-------------------------
//	armed     | POLL_ADD queued or in the kernel  | CQE -> Event; Disarm ->
//	          |                                   | disarming (ASYNC_CANCEL)
//	disarming | ASYNC_CANCEL queued or done       | CQE -> Event: -ECANCELED
//	          |                                   | is Canceled, a mask is
//	          |                                   | the readiness that won
//	(absent)  | its CQE was reaped                | Disarm does nothing
//
// The cancel's own CQE (0, or -ENOENT when the poll already completed)
// carries udCancel and only settles owed: the poll's CQE is always the tag's
// one Event. SQEs are consumed in order, so a cancel queued behind its
// POLL_ADD always finds it or its result.
//
// Why ASYNC_CANCEL and not POLL_REMOVE: a poll whose wake-up is being
// handled (task work pending, always the case for a while on a
// DEFER_TASKRUN ring) cannot be disarmed, so POLL_REMOVE answers -EALREADY
// and does nothing more; if that wake-up turns out spurious (the data was
// read meanwhile) the kernel re-queues the poll, and the removal is lost
// with the poll still armed. ASYNC_CANCEL marks the poll canceled, which
// the pending wake-up honours: -ECANCELED. TestModel found this.

// Internal user_data values (InternalBit set, so never a caller's tag, and
// never ring.TimeoutUserData).
const (
	udWake   = InternalBit | 1 // the POLL_ADD on the waker's eventfd
	udCancel = InternalBit | 2 // every ASYNC_CANCEL
)

// setupLadders lists, per UringSetup, the flag sets New tries in order; a
// kernel that answers EINVAL (flags it does not know) gets the next one.
var setupLadders = [...][]ring.SetupFlags{
	UringSingleIssuer: {
		ring.SetupSingleIssuer | ring.SetupDeferTaskrun | ring.SetupCoopTaskrun | ring.SetupTaskrunFlag,
		ring.SetupSingleIssuer | ring.SetupDeferTaskrun,
		ring.SetupCoopTaskrun | ring.SetupTaskrunFlag,
		0,
	},
	UringCoop:  {ring.SetupCoopTaskrun | ring.SetupTaskrunFlag, 0},
	UringPlain: {0},
}

type uringPoller struct {
	r *ring.Ring // constant after newUring
	w *waker     // constant after newUring

	// Owned by the owner goroutine (and its OS thread, single-issuer).
	g         ledger   // the tags in flight (but their records, with ext)
	ext       Records  // constant: Options.Records, where the records are kept; nil = in g
	hold      bool     // Hold's: the idle Wait keeps the owner's P (owner only)
	forget    []uint64 // Forget's scratch list
	cqes      []ring.CQE
	out       []Event // decided Events not yet returned (reaped to make room)
	owed      int     // CQEs the kernel has yet to post for our SQEs
	disarming int     // records marked recDisarming: their files still held (Settle)

	// gatherN, gatherFor: Gather's, for the next Wait only (owner only).
	gatherN   int
	gatherFor time.Duration

	// queued: the tags booked since the SQ was last seen empty after an
	// enter; noteSubmitted clears their records' recQueued.
	queued []uint64
	// queuedDisarm: a tag still in the SQ was disarmed since the SQ was
	// last seen empty. Without fd lists (Options.CallerDisarms) Forget
	// cannot tell whose it was, so it hands the SQ over whenever this is
	// set: an arm disarmed in the turn it was made is rare.
	queuedDisarm bool
	wakeArmed    bool  // the udWake POLL_ADD is queued or in the kernel
	woken        bool  // a wake-up was taken since the last Wait decided to sleep or not
	stats        Stats // Syscalls here counts eventfd reads; Stats adds Enters
	closed       bool
	bufs         *ring.BufRing // the receive path's buffers (RingIO); nil without one
	// bounded: the ring of receives that must not bring more than a
	// buffer of the options' size, RecvAtMost's and a Recv that is not
	// multishot: bufs where it is whole, else a whole ring of its own.
	// An incremental ring's buffers are larger (incShape), and where the
	// kernel commits a buffer when it picks it (io-wq), it commits a
	// limited receive's limit, not what it received, so the pieces after
	// would start where ring.BufRing does not know.
	bounded *ring.BufRing
	recvWhy string // why bufs is nil
	// recvLimit: RecvOptions.Limit where the kernel has it (else 0, and
	// limitWhy says why not).
	recvLimit uint32
	limitWhy  string
	maxFd     int // FdLimit, constant after newUring; last, away from the hot fields
}

// NewUring opens the io_uring backend. Call it on the OS thread that will
// own the poller (runtime.LockOSThread) unless opts.Setup is UringCoop or
// UringPlain.
func NewUring(opts Options) (Poller, error) {
	p, _, err := newUring(opts)
	return p, err
}

// newUring sets up a ring down the opts.Setup ladder, probes the opcodes the
// backend uses, and returns the flags it settled on.
func newUring(opts Options) (Poller, string, error) {
	entries := opts.Entries
	if entries == 0 {
		entries = 256
	}
	if int(opts.Setup) >= len(setupLadders) {
		return nil, "", fmt.Errorf("poller: unknown UringSetup %d", opts.Setup)
	}
	var r *ring.Ring
	var err error
	for _, flags := range setupLadders[opts.Setup] {
		r, err = ring.New(ring.Config{Entries: entries, CQEntries: 2 * entries, Flags: flags})
		var ue *ring.UnavailableError
		if err == nil || !errors.As(err, &ue) || ue.Errno != unix.EINVAL {
			break
		}
	}
	if err != nil {
		return nil, "", err
	}
	pr, err := probe(r)
	if err != nil {
		r.Close()
		return nil, "", err
	}
	w, err := newWaker()
	if err != nil {
		r.Close()
		return nil, "", err
	}
	p := &uringPoller{
		r:     r,
		w:     w,
		maxFd: FdLimit(),
		cqes:  make([]ring.CQE, 2*r.CQEntries()),
	}
	p.g.unlisted = opts.CallerDisarms
	if opts.Records != nil && opts.CallerDisarms {
		p.ext = opts.Records
	}
	if err := p.setupRecv(opts.Recv, pr); err != nil {
		w.close()
		r.Close()
		return nil, "", err
	}
	return p, (r.Flags() &^ ring.SetupCQSize).String(), nil
}

// probe checks that the kernel has the opcodes the backend prepares.
func probe(r *ring.Ring) (*ring.Probe, error) {
	pr, err := r.Probe()
	if err != nil {
		return nil, err
	}
	for _, op := range []ring.Opcode{ring.OpPollAdd, ring.OpAsyncCancel} {
		if !pr.Supports(op) {
			return nil, &ring.UnavailableError{Op: "opcode", Errno: unix.EOPNOTSUPP,
				Reason: "the kernel lacks IORING_OP_" + op.String() + "; use the epoll backend"}
		}
	}
	return pr, nil
}

func (p *uringPoller) Backend() Backend { return Uring }

func (p *uringPoller) Wake() error { return p.w.wake() }

func (p *uringPoller) Stats() Stats {
	st := p.stats
	st.Syscalls += p.r.Enters()
	st.Disarming = p.disarming
	return st
}

func (p *uringPoller) Arm(tag uint64, fd int, events uint32) error {
	if p.closed {
		return ErrClosed
	}
	s, err := p.slot(tag, fd, events)
	if err != nil {
		return err
	}
	events &^= Edge // one POLL_ADD per arm whatever the caller promises
	s.PrepPollAdd(int32(fd), events, tag)
	p.book(tag, fd, events, kindPoll)
	return nil
}

// slot checks a request's tag and fd (and a poll's events) and returns the
// SQE to prepare for it; book then records it. Arm, Recv and Send share
// them, so every tagged request is checked, owed and recorded alike.
func (p *uringPoller) slot(tag uint64, fd int, events uint32) (*ring.SQE, error) {
	if err := checkArm(tag, fd, events, p.maxFd); err != nil {
		return nil, err
	}
	if err := p.checkFree(tag); err != nil {
		return nil, err
	}
	return p.sqe() // may reap, which only frees indexes
}

// book records a request just prepared in the SQE slot returned: the
// kernel owes its CQE, and the ledger holds its tag.
func (p *uringPoller) book(tag uint64, fd int, events uint32, kind tagKind) {
	p.owed++
	rec := p.addRec(tag, fd, events)
	rec.st |= recState(kind) | recQueued
	p.queued = append(p.queued, tag)
	p.stats.Arms++
	p.stats.Armed++
}

// unsubmitted reports whether rec's SQE may still sit in the SQ: it was
// booked after the SQ was last seen empty (noteSubmitted).
func (p *uringPoller) unsubmitted(rec *TagRecord) bool { return rec.has(recQueued) }

func (p *uringPoller) Disarm(tag uint64) bool {
	if p.closed {
		return false
	}
	if rec := p.rec(tag); rec == nil || rec.has(recDisarming) {
		return false
	}
	p.mustCancel(tag)
	// Making room for the cancel may have reaped tag's own CQE (a full SQ
	// flushed on a kernel that answers EBUSY while its CQ overflows): its
	// Event is then decided and waits in p.out, and its record is gone, so
	// it is looked up again rather than marked through the pointer taken
	// before. The cancel then finds nothing (-ENOENT).
	rec := p.rec(tag)
	if rec == nil {
		return false
	}
	rec.set(recDisarming, true)
	p.disarming++
	p.queuedDisarm = p.queuedDisarm || rec.has(recQueued)
	p.stats.Disarms++
	return true
}

func (p *uringPoller) Forget(fd int) {
	if p.closed || !validFd(fd) {
		return // nothing can be armed there; int32(fd) would name another fd
	}
	// The removals go by tag, not by fd: the caller closes fd before they
	// reach the kernel, and an fd number resolved then would name nothing,
	// or the next file to get that number. The tags are listed first:
	// queueing a cancel may reap, which unlinks records from the list.
	// Tags of fd's earlier life still in flight are on the list too; their
	// Disarm does nothing (already disarming).
	list := p.forget[:0]
	unsubmitted := false
	for i := p.g.first(fd); i != 0; i = p.g.next(i) {
		rec := p.g.at(i)
		list = append(list, rec.tag)
		unsubmitted = unsubmitted || p.unsubmitted(&rec.TagRecord)
	}
	for _, tag := range list {
		p.Disarm(tag)
	}
	p.forget = list[:0]
	// Without lists the caller disarmed fd's tags before this call, and
	// one still queued set queuedDisarm.
	if unsubmitted || p.g.unlisted && p.queuedDisarm {
		// A POLL_ADD still in the SQ resolves its fd number when the
		// kernel takes it. Hand it over now, while the number still names
		// this file: after the caller's close it would arm on the next
		// file to get the number, and report that file's readiness.
		if err := p.flush(); err != nil {
			panic(fmt.Sprintf("poller: Forget(%d): cannot submit the fd's pending arms: %v", fd, err))
		}
	}
}

// flush hands every queued SQE to the kernel now, reaping into p.out when
// the kernel wants completions taken first.
func (p *uringPoller) flush() error {
	for p.r.SQReady() > 0 {
		if _, err := p.r.Submit(); err != nil {
			if !errors.Is(err, unix.EBUSY) {
				return p.enterErr(err)
			}
			p.reapOut()
		}
	}
	p.noteSubmitted()
	return nil
}

// reapOut reaps ready CQEs into p.out, for Wait to return.
func (p *uringPoller) reapOut() {
	n := p.r.Reap(p.cqes)
	for i := range n {
		var ev Event
		if p.complete(&p.cqes[i], &ev) {
			p.out = append(p.out, ev)
		}
	}
}

// cancel queues an ASYNC_CANCEL of target. It fails only when a full SQ
// could not be flushed: the ring is unusable (wrong thread).
func (p *uringPoller) cancel(target uint64) error {
	s, err := p.sqe()
	if err != nil {
		return fmt.Errorf("poller: cannot queue ASYNC_CANCEL for %#x: %w", target, err)
	}
	s.PrepCancel(target, 0, udCancel)
	p.owed++
	return nil
}

// mustCancel is cancel for Disarm, which has no error to return: a ring
// that cannot take SQEs on its owner's thread is a broken invariant.
func (p *uringPoller) mustCancel(target uint64) {
	if err := p.cancel(target); err != nil {
		panic(err.Error())
	}
}

// sqe returns a free SQE, flushing a full SQ to the kernel first. When the
// kernel refuses to take SQEs while completions wait on its overflow list,
// those are reaped into p.out and the flush is retried.
func (p *uringPoller) sqe() (*ring.SQE, error) {
	for {
		s, err := p.r.GetSQE()
		if !errors.Is(err, ring.ErrSQFull) {
			return s, err
		}
		if _, err := p.r.Submit(); err != nil {
			if !errors.Is(err, unix.EBUSY) {
				return nil, p.enterErr(err)
			}
			p.reapOut()
		}
		p.noteSubmitted()
	}
}

// noteSubmitted records that every Arm so far reached the kernel, when the
// SQ is empty.
func (p *uringPoller) noteSubmitted() {
	if p.r.SQReady() != 0 {
		return
	}
	// A tag listed may since have ended (no record found) and its index
	// been booked again under another tag (listed too): either way its
	// SQE has gone too.
	for _, tag := range p.queued {
		if r := p.rec(tag); r != nil {
			r.set(recQueued, false)
		}
	}
	p.queued = p.queued[:0]
	p.queuedDisarm = false
}

func (p *uringPoller) enterErr(err error) error {
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w: %w", ErrWrongThread, err)
	}
	return fmt.Errorf("poller: %w", err)
}

func (p *uringPoller) Hold(held bool) { p.hold = held }

func (p *uringPoller) Gather(n int, within time.Duration) { p.gatherN, p.gatherFor = n, within }

func (p *uringPoller) Wait(evs []Event, timeout time.Duration) (int, error) {
	if len(evs) == 0 {
		panic("poller: Wait with an empty buffer")
	}
	if p.closed {
		return 0, ErrClosed
	}
	if !p.wakeArmed {
		// First, because a full SQ flush may reap into p.out.
		s, err := p.sqe()
		if err != nil {
			return 0, err
		}
		s.PrepPollAdd(int32(p.w.fd), In, udWake)
		p.owed++
		p.wakeArmed = true
	}
	n := copy(evs, p.out)
	p.out = p.out[:copy(p.out, p.out[n:])]
	if n < len(evs) {
		if p.r.SQReady() > 0 {
			// This Wait enters below to submit, and that enter runs the
			// kernel's pending work too: entering for it here as well
			// made two system calls of every busy turn (0.24 enters a
			// message at 1,000 connections, against 0.13 for the C
			// server that enters once a turn).
			n += p.reapPosted(evs[n:])
		} else {
			n += p.reap(evs[n:]) // enters only if the kernel flags pending work
		}
	}
	// A wake-up already taken (by that look, or by an Arm's early flush)
	// ends this Wait now: sleeping would not end at the Wake it answers,
	// and the wake-up poll armed above is not in the kernel yet, so the
	// Wake after it would be lost too (TestWakeBetweenWaits).
	woken := p.woken
	p.woken = false
	gatherN, gatherFor := p.gatherN, p.gatherFor
	p.gatherN = 0
	if n > 0 || timeout == 0 || woken {
		// Busy turn: hand over what this turn queued, without waiting
		// (but where Gather asked, below), and take what that posted. A
		// look (timeout 0) with nothing to hand over returns what the CQ
		// had without entering the kernel: an owner parked on Fd looks
		// once per wake-up, and the completions that woke it are already
		// posted. Only a ring that cannot flag task work it holds back
		// (no SetupTaskrunFlag) is entered on an empty look, to have that
		// work run; with the flag, Reap enters when it is raised. (A send
		// that completes during the enter that submits it also makes Fd
		// readable: the look that wake-up causes then costs no system
		// call.)
		if p.r.SQReady() > 0 || (timeout == 0 && n == 0 && p.r.Flags()&ring.SetupTaskrunFlag == 0) {
			var err error
			gathered := gatherN > 1 && gatherFor > 0 && n == 0 && !woken && p.r.SQReady() > 0 && !p.w.pending.Load()
			if gathered {
				// Gather's look: the enter that hands the SQEs over
				// waits for the batch. A wake-up taken or sent does not
				// wait: its owner has a command to run. (Sent, its CQE
				// may still be the kernel's deferred work, which the
				// look above left for this enter.)
				_, err = p.r.SubmitAndWaitHeld(uint32(gatherN), gatherFor)
				p.stats.Gathered++
			} else {
				_, err = p.r.SubmitAndWait(0, 0)
			}
			if err != nil {
				if n > 0 {
					// Events in hand go out now (see Poller.Wait); the
					// SQEs stay queued and the next enter meets the
					// error again.
					return p.delivered(evs, n), nil
				}
				return 0, p.enterErr(err)
			}
			p.noteSubmitted()
			if gathered {
				// The gathering enter ran the kernel's work until the
				// batch was posted; what it flags since waits for the
				// next turn's enter, which a loop that gathers makes at
				// once. Entering again here for it made 2.4 enters of
				// every turn at 1,000 connections, where 1.03 take the
				// same batches.
				n += p.reapPosted(evs[n:])
			} else {
				n += p.reap(evs[n:])
			}
			p.woken = false // this Wait returns: it answers that wake-up too
		}
		return p.delivered(evs, n), nil
	}
	// Idle turn: submit everything and wait, in one io_uring_enter.
	var err error
	if p.hold {
		_, err = p.r.SubmitAndWaitHeld(1, timeout)
	} else {
		_, err = p.r.SubmitAndWait(1, timeout)
	}
	if err != nil {
		return 0, p.enterErr(err)
	}
	p.noteSubmitted()
	n = p.reap(evs)
	p.woken = false // as above
	return p.delivered(evs, n), nil
}

// delivered counts the n Events Wait returns in evs: each ends its tag,
// but a receive's Event that says More.
func (p *uringPoller) delivered(evs []Event, n int) int {
	p.stats.Events += uint64(n)
	for i := range n {
		if !evs[i].More {
			p.stats.Armed--
		}
	}
	return n
}

// reap moves ready CQEs into evs and returns how many Events it wrote. It
// goes on while CQEs keep coming and evs has room: a DEFER_TASKRUN ring
// posts deferred completions only some at a time (20 per io_uring_enter on
// 6.13+ kernels), raising TASKRUN in the SQ flags while more are pending,
// and Reap enters again for those.
func (p *uringPoller) reap(evs []Event) int { return p.reapWith(evs, true) }

// reapPosted is reap without entering (ring.ReapPosted), for a Wait that
// enters next anyway.
func (p *uringPoller) reapPosted(evs []Event) int { return p.reapWith(evs, false) }

func (p *uringPoller) reapWith(evs []Event, flush bool) int {
	n := 0
	for n < len(evs) {
		want := min(len(evs)-n, len(p.cqes))
		var k int
		if flush {
			k = p.r.Reap(p.cqes[:want])
		} else {
			k = p.r.ReapPosted(p.cqes[:want])
		}
		for i := range k {
			if p.complete(&p.cqes[i], &evs[n]) {
				n++
			}
		}
		if k == 0 {
			break
		}
	}
	return n
}

// complete settles one CQE and writes the Event it decides, if any, to ev
// (all of it, and only then). In place, not returned: an Event returned
// by value was copied twice more on the way to its slot, with a stall at
// each copy that read back what the small stores filling it had not yet
// written, 13-19% of echod's user time at 1,000 connections.
func (p *uringPoller) complete(c *ring.CQE, ev *Event) bool {
	if !c.More() {
		p.owed-- // a multishot request owes until its last CQE
	}
	if p.owed < 0 {
		panic(fmt.Sprintf("poller: CQE %+v that no SQE of ours owed", *c))
	}
	switch c.UserData {
	case udWake:
		p.wakeArmed = false
		p.woken = true
		if !p.closed {
			p.stats.Wakes++
			p.stats.Syscalls += p.w.ack()
		}
		return false
	case udCancel:
		return false
	}
	if c.UserData&InternalBit != 0 {
		panic(fmt.Sprintf("poller: CQE with unknown internal user_data %#x", c.UserData))
	}
	tag := c.UserData
	rec := p.rec(tag)
	if rec == nil {
		// Tags are unique among polls in flight (ErrTagInUse) and each
		// poll posts one CQE: a second would be the double this package
		// exists to prevent.
		panic(fmt.Sprintf("poller: POLL_ADD CQE %+v for a tag not in flight", *c))
	}
	switch rec.kind() {
	case kindRecv, kindRecvBounded, kindSend, kindAccept:
		p.completeIO(c, tag, rec, ev)
		return true
	}
	st := *rec
	p.dropRec(tag, rec)
	*ev = Event{Tag: tag}
	switch {
	case c.Res > 0:
		// The kernel adds bits not asked for (RdHup with Hup); report
		// what epoll would, unless that leaves nothing.
		if ev.Events = readyMask(st.events(), uint32(c.Res)); ev.Events == 0 {
			ev.Events = uint32(c.Res)
		}
	case c.Res == -int32(unix.ECANCELED):
		ev.Canceled = true
	case c.Res < 0:
		ev.Errno = unix.Errno(-c.Res)
	default:
		panic(fmt.Sprintf("poller: POLL_ADD for tag %#x completed with an empty mask", tag))
	}
	return true
}

func (p *uringPoller) Fd() int { return p.r.Fd() }

// Queued reports SQEs prepared and not yet submitted, or Events reaped
// early (to make room in the SQ) and not yet returned.
func (p *uringPoller) Queued() bool { return !p.closed && (p.r.SQReady() > 0 || len(p.out) > 0) }
