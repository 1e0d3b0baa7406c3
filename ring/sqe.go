//go:build linux

package ring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// TimeoutUserData is the user_data of the TIMEOUT requests SubmitAndWait
// queues on kernels without FeatExtArg. Do not use it for your own
// requests: Reap drops CQEs that carry it once such a request was queued.
const TimeoutUserData = ^uint64(0)

// SQE is a submission queue entry being prepared. Get one with GetSQE, call
// exactly one Prep method, optionally SetFlags, then Submit. The SQE lives
// in Go memory owned by the Ring; Submit copies it to the kernel, so the
// pointer must not be used after the next Submit or SubmitAndWait.
type SQE struct {
	raw sqe
	// ts holds PrepTimeout's timespec. raw.addr points here; the kernel
	// reads it while it consumes the SQE, during io_uring_enter, and the
	// slot is not handed out again before that.
	ts kernelTimespec
}

// PrepNop prepares a request that does nothing and completes with Res 0.
func (s *SQE) PrepNop(userData uint64) {
	s.raw = sqe{opcode: uint8(OpNop), userData: userData}
}

// PrepPollAdd prepares a one-shot poll: it completes once, with Res holding
// the ready events (POLLIN, POLLOUT, ...) or a negative errno, when fd has
// any of events ready. events is a 32-bit mask (FeatPoll32Bits; on older
// kernels only the low 16 bits count).
func (s *SQE) PrepPollAdd(fd int32, events uint32, userData uint64) {
	s.raw = sqe{opcode: uint8(OpPollAdd), fd: fd, opFlags: pollEvents(events), userData: userData}
}

// PrepPollRemove prepares the removal of the pending poll whose user_data is
// targetUserData. The poll then completes with -ECANCELED and this request
// with 0, or this request completes with -ENOENT (no such poll: it already
// completed or never existed) or -EALREADY.
func (s *SQE) PrepPollRemove(targetUserData, userData uint64) {
	s.raw = sqe{opcode: uint8(OpPollRemove), fd: -1, addr: targetUserData, userData: userData}
}

// PrepCancel prepares an ASYNC_CANCEL of the request whose user_data is
// targetUserData (or of every match, with CancelAll; of any request, with
// CancelAny). It completes with 0 (or, with CancelAll, the count), -ENOENT
// when nothing matched, or -EALREADY when the target was already running.
func (s *SQE) PrepCancel(targetUserData uint64, flags CancelFlags, userData uint64) {
	s.raw = sqe{opcode: uint8(OpAsyncCancel), fd: -1, addr: targetUserData,
		opFlags: uint32(flags), userData: userData}
}

// PrepCancelFd prepares an ASYNC_CANCEL of the request(s) on fd (5.19+);
// CancelFd is added to flags. Add CancelAll to cancel every request on fd.
func (s *SQE) PrepCancelFd(fd int32, flags CancelFlags, userData uint64) {
	s.raw = sqe{opcode: uint8(OpAsyncCancel), fd: fd,
		opFlags: uint32(flags | CancelFd), userData: userData}
}

// PrepTimeout prepares a timer: it completes with -ETIME when ts has passed
// (relative, unless flags has TimeoutAbs), or with 0 once count other
// requests completed (count 0: a pure timer). ts is copied: it need not
// outlive the call.
func (s *SQE) PrepTimeout(ts *unix.Timespec, count uint32, flags uint32, userData uint64) {
	s.ts = kernelTimespec{sec: int64(ts.Sec), nsec: int64(ts.Nsec)}
	s.raw = sqe{opcode: uint8(OpTimeout), fd: -1, addr: uint64(uintptr(unsafe.Pointer(&s.ts))),
		len: 1, off: uint64(count), opFlags: flags, userData: userData}
}

// PrepTimeoutRemove prepares the removal of the pending TIMEOUT whose
// user_data is targetUserData: it then completes with -ECANCELED and this
// request with 0, or this one with -ENOENT.
func (s *SQE) PrepTimeoutRemove(targetUserData, userData uint64) {
	s.raw = sqe{opcode: uint8(OpTimeoutRemove), fd: -1, addr: targetUserData, userData: userData}
}

// SetFlags sets per-request flags (IOSQE_*); call it after the Prep method,
// which clears them (all but the buffer selection PrepRecvSelect asked for).
func (s *SQE) SetFlags(f SQEFlags) {
	s.raw.flags = uint8(f) | s.raw.flags&uint8(sqeBufferSelect)
}

// UserData returns the user_data the SQE was prepared with.
func (s *SQE) UserData() uint64 { return s.raw.userData }

// Opcode returns the operation the SQE was prepared for.
func (s *SQE) Opcode() Opcode { return Opcode(s.raw.opcode) }

// recvMultishot is IORING_RECV_MULTISHOT, a RECV's ioprio flag (6.0).
const recvMultishot = 1 << 1

// PrepRecvSelect prepares a RECV on fd whose buffer the kernel takes from
// the BufRing of group when data arrives, so a receive that waits holds no
// buffer. Its CQE carries the buffer's id (CQE.Buffer) and Res bytes; Res
// 0 is the peer's EOF, -ENOBUFS says the group had no buffer left. With
// multishot (Linux 6.0; SupportsRecvMultishot) the request stays armed and
// posts a CQE per receive, each but the last with CQEFMore; it ends at EOF,
// an error, ENOBUFS or its cancel.
func (s *SQE) PrepRecvSelect(fd int32, group uint16, multishot bool, userData uint64) {
	s.raw = sqe{opcode: uint8(OpRecv), fd: fd, flags: uint8(sqeBufferSelect),
		bufIndex: group, userData: userData}
	if multishot {
		s.raw.ioprio = recvMultishot
	}
}

// SetRecvLimit makes the multishot RECV just prepared (PrepRecvSelect) end,
// with a CQE without MORE, once it has received n bytes in all, the receive
// that crosses n included (so up to a buffer more). The limit goes in the
// SQE's optlen (the splice_fd_in slot). Kernels before the limit (IORING_
// RECV_MSHOT_LIM, 2025) fail such a RECV with EINVAL: probe first.
func (s *SQE) SetRecvLimit(n uint32) { s.raw.spliceFdIn = int32(n) }

// recvPollFirst is IORING_RECVSEND_POLL_FIRST (5.19): the request waits
// for readiness before its first attempt.
const recvPollFirst = 1 << 0

// PrepRecvSelectMax is a one-shot PrepRecvSelect that takes at most max
// bytes (max > 0) from the socket, however large the selected buffer: the
// kernel reads min(max, buffer size), so a reader that asked for less than
// a buffer never gets more than it can hold, and nothing is left over.
// With pollFirst the kernel waits for readiness before it tries, sparing
// an attempt that would find nothing, for a caller that just saw the
// socket empty.
func (s *SQE) PrepRecvSelectMax(fd int32, group uint16, max uint32, pollFirst bool, userData uint64) {
	s.raw = sqe{opcode: uint8(OpRecv), fd: fd, flags: uint8(sqeBufferSelect),
		bufIndex: group, len: max, userData: userData}
	if pollFirst {
		s.raw.ioprio = recvPollFirst
	}
}

// PrepSend prepares a SEND of b on fd with send(2)'s flags. The kernel reads
// b after Submit returns: the caller keeps b's memory alive and unchanged
// until the CQE (Res: bytes sent, possibly fewer than len(b)).
func (s *SQE) PrepSend(fd int32, b []byte, msgFlags uint32, userData uint64) {
	s.raw = sqe{opcode: uint8(OpSend), fd: fd, len: uint32(len(b)), opFlags: msgFlags, userData: userData}
	if len(b) > 0 {
		s.raw.addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	}
}

// acceptMultishot is IORING_ACCEPT_MULTISHOT, an ACCEPT's ioprio flag
// (5.19).
const acceptMultishot = 1 << 0

// PrepAcceptMultishot prepares a multishot ACCEPT on the listening socket
// fd: the request stays armed and posts a CQE per connection the kernel
// accepts, Res the new descriptor, opened with flags (accept4's:
// SOCK_NONBLOCK, SOCK_CLOEXEC), each with CQEFMore; it ends with a CQE
// without it, at an error (EMFILE and the like; the accepts before it
// stand) or its cancel.
// It asks for no peer address: one buffer would serve every accept, each
// overwriting the last before the CQE naming it is read.
func (s *SQE) PrepAcceptMultishot(fd int32, flags uint32, userData uint64) {
	s.raw = sqe{opcode: uint8(OpAccept), fd: fd, opFlags: flags, ioprio: acceptMultishot, userData: userData}
}

// CQE is a completion queue entry, laid out as the kernel's struct
// io_uring_cqe.
type CQE struct {
	// UserData is the user_data of the request that completed.
	UserData uint64
	// Res is the result: non-negative on success, -errno on failure.
	Res int32
	// Flags are IORING_CQE_F_* bits.
	Flags uint32
}

// Buffer returns the id of the provided buffer the request filled, if it
// took one (CQEFBuffer).
func (c CQE) Buffer() (id uint16, ok bool) {
	return uint16(c.Flags >> cqeBufferShift), c.Flags&CQEFBuffer != 0
}

// BufMore reports whether the kernel keeps the rest of the incremental
// buffer the request took part of (CQEFBufMore): see BufRing.
func (c CQE) BufMore() bool { return c.Flags&CQEFBufMore != 0 }

// More reports whether the request posts more CQEs (CQEFMore, multishot).
func (c CQE) More() bool { return c.Flags&CQEFMore != 0 }

// Err returns Res as an error: nil when Res >= 0, else the unix.Errno.
func (c CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return unix.Errno(-c.Res)
}
