//go:build linux

package ring

import (
	"fmt"
	"strings"
)

// SetupFlags are io_uring_setup(2) flags (IORING_SETUP_*). Only the flags
// that fit this package's single-submitter, no-SQPOLL model are named; the
// values are the kernel's.
type SetupFlags uint32

const (
	// SetupClamp clamps Entries and CQEntries to the kernel's maximum
	// instead of failing with EINVAL (IORING_SETUP_CLAMP, 5.6).
	SetupClamp SetupFlags = 1 << 4
	// SetupSubmitAll keeps submitting the rest of a batch when one SQE
	// fails to prepare (IORING_SETUP_SUBMIT_ALL, 5.18).
	SetupSubmitAll SetupFlags = 1 << 7
	// SetupCoopTaskrun lets the kernel defer completion work to the next
	// io_uring_enter instead of interrupting the task
	// (IORING_SETUP_COOP_TASKRUN, 5.19).
	SetupCoopTaskrun SetupFlags = 1 << 8
	// SetupTaskrunFlag makes the kernel raise a flag in the SQ ring when
	// completion work is pending, so Reap knows to enter the kernel
	// (IORING_SETUP_TASKRUN_FLAG, 5.19; needs SetupCoopTaskrun or
	// SetupDeferTaskrun).
	SetupTaskrunFlag SetupFlags = 1 << 9
	// SetupSingleIssuer promises that one thread only submits
	// (IORING_SETUP_SINGLE_ISSUER, 6.0). The thread that calls New is that
	// thread: lock it with runtime.LockOSThread before New and keep using it;
	// io_uring_enter from another thread fails with EEXIST.
	SetupSingleIssuer SetupFlags = 1 << 12
	// SetupDeferTaskrun defers completion work until the owning thread calls
	// io_uring_enter with GETEVENTS (IORING_SETUP_DEFER_TASKRUN, 6.1; needs
	// SetupSingleIssuer). Completions of such a ring are only posted from
	// SubmitAndWait or Reap on the thread that called New.
	SetupDeferTaskrun SetupFlags = 1 << 13

	// SetupCQSize says Config.CQEntries holds the CQ size
	// (IORING_SETUP_CQSIZE, 5.5). New sets it whenever CQEntries is
	// non-zero; it appears in Flags for such rings.
	SetupCQSize SetupFlags = 1 << 3
)

// supportedFlags are the setup flags New accepts. The kernel's others
// change what this package's model of the ring assumes: the SQE or CQE size
// (SQE128, CQE32), the SQ index array and the mappings (NO_SQARRAY,
// NO_MMAP), or who submits and how completions come (SQPOLL, IOPOLL).
const supportedFlags = SetupCQSize | SetupClamp | SetupSubmitAll | SetupCoopTaskrun |
	SetupTaskrunFlag | SetupSingleIssuer | SetupDeferTaskrun

var setupFlagNames = []struct {
	f    SetupFlags
	name string
}{
	{SetupCQSize, "CQSIZE"},
	{SetupClamp, "CLAMP"},
	{SetupSubmitAll, "SUBMIT_ALL"},
	{SetupCoopTaskrun, "COOP_TASKRUN"},
	{SetupTaskrunFlag, "TASKRUN_FLAG"},
	{SetupSingleIssuer, "SINGLE_ISSUER"},
	{SetupDeferTaskrun, "DEFER_TASKRUN"},
}

// String names the flags the way the kernel headers do, e.g.
// "SINGLE_ISSUER|DEFER_TASKRUN"; unknown bits print in hex.
func (f SetupFlags) String() string {
	if f == 0 {
		return "0"
	}
	var parts []string
	for _, n := range setupFlagNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(f)))
	}
	return strings.Join(parts, "|")
}

// Features are what the kernel reports about itself at setup
// (IORING_FEAT_*).
type Features uint32

const (
	// FeatSingleMmap: the SQ and CQ rings share one mapping (5.4).
	FeatSingleMmap Features = 1 << 0
	// FeatNoDrop: the kernel keeps completions that do not fit in the CQ on
	// an overflow list instead of dropping them (5.5).
	FeatNoDrop Features = 1 << 1
	// FeatSubmitStable: data an SQE points to is consumed at submit (5.5).
	FeatSubmitStable Features = 1 << 2
	// FeatFastPoll: internal poll-driven retry for sockets (5.7).
	FeatFastPoll Features = 1 << 5
	// FeatPoll32Bits: POLL_ADD takes a 32-bit events mask (5.9).
	FeatPoll32Bits Features = 1 << 6
	// FeatExtArg: io_uring_enter takes a timeout without an SQE (5.11).
	FeatExtArg Features = 1 << 8
	// FeatNativeWorkers: async workers are native threads (5.12).
	FeatNativeWorkers Features = 1 << 9
	// FeatCQESkip: IOSQE_CQE_SKIP_SUCCESS is supported (5.17).
	FeatCQESkip Features = 1 << 11
	// FeatLinkedFile: linked requests resolve files late (5.17).
	FeatLinkedFile Features = 1 << 12
	// FeatMinTimeout: EXT_ARG waits accept a minimum wait time (6.12).
	FeatMinTimeout Features = 1 << 15
)

// Has reports whether every feature in want is present.
func (f Features) Has(want Features) bool { return f&want == want }

// Opcode is an io_uring operation (enum io_uring_op). Only the opcodes this
// package prepares, or that callers may want to probe, are named.
type Opcode uint8

const (
	OpNop           Opcode = 0  // IORING_OP_NOP (5.1)
	OpPollAdd       Opcode = 6  // IORING_OP_POLL_ADD (5.1)
	OpPollRemove    Opcode = 7  // IORING_OP_POLL_REMOVE (5.1)
	OpTimeout       Opcode = 11 // IORING_OP_TIMEOUT (5.4)
	OpTimeoutRemove Opcode = 12 // IORING_OP_TIMEOUT_REMOVE (5.5)
	OpAccept        Opcode = 13 // IORING_OP_ACCEPT (5.5)
	OpAsyncCancel   Opcode = 14 // IORING_OP_ASYNC_CANCEL (5.5)
	OpLinkTimeout   Opcode = 15 // IORING_OP_LINK_TIMEOUT (5.5)
	OpClose         Opcode = 19 // IORING_OP_CLOSE (5.6)
	OpRead          Opcode = 22 // IORING_OP_READ (5.6)
	OpWrite         Opcode = 23 // IORING_OP_WRITE (5.6)
	OpSend          Opcode = 26 // IORING_OP_SEND (5.6)
	OpRecv          Opcode = 27 // IORING_OP_RECV (5.6)
	OpSendZC        Opcode = 47 // IORING_OP_SEND_ZC (6.0, with multishot RECV)
)

var opcodeNames = map[Opcode]string{
	OpNop: "NOP", OpPollAdd: "POLL_ADD", OpPollRemove: "POLL_REMOVE",
	OpTimeout: "TIMEOUT", OpTimeoutRemove: "TIMEOUT_REMOVE", OpAccept: "ACCEPT",
	OpAsyncCancel: "ASYNC_CANCEL", OpLinkTimeout: "LINK_TIMEOUT",
	OpClose: "CLOSE", OpRead: "READ", OpWrite: "WRITE", OpSend: "SEND",
	OpRecv: "RECV", OpSendZC: "SEND_ZC",
}

// String returns the kernel's name without the IORING_OP_ prefix, e.g.
// "POLL_ADD", or "opcode(N)" for an opcode this package does not name.
func (o Opcode) String() string {
	if s, ok := opcodeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("opcode(%d)", uint8(o))
}

// CancelFlags select what an ASYNC_CANCEL matches (IORING_ASYNC_CANCEL_*).
type CancelFlags uint32

const (
	// CancelAll cancels every request that matches, not just the first;
	// the CQE's Res is how many were canceled (5.19).
	CancelAll CancelFlags = 1 << 0
	// CancelFd matches requests on a file descriptor instead of by
	// user_data (5.19). PrepCancelFd sets it.
	CancelFd CancelFlags = 1 << 1
	// CancelAny matches every request and implies CancelAll: Res is the
	// count (5.19).
	CancelAny CancelFlags = 1 << 2
)

// Timeout flags for PrepTimeout (IORING_TIMEOUT_*).
const (
	// TimeoutAbs: the timespec is an absolute CLOCK_MONOTONIC time.
	TimeoutAbs uint32 = 1 << 0
	// TimeoutBoottime: measure against CLOCK_BOOTTIME (5.15).
	TimeoutBoottime uint32 = 1 << 2
	// TimeoutRealtime: measure against CLOCK_REALTIME (5.15).
	TimeoutRealtime uint32 = 1 << 3
	// TimeoutETimeSuccess: an expiry completes with -ETIME but does not
	// fail a link chain (5.16).
	TimeoutETimeSuccess uint32 = 1 << 5
)

// SQEFlags are per-request flags (IOSQE_*), set with SQE.SetFlags after a
// Prep method.
type SQEFlags uint8

const (
	// SQEIODrain: start only after every earlier request completed.
	SQEIODrain SQEFlags = 1 << 1
	// SQEIOLink: the next SQE starts only after this one completes.
	SQEIOLink SQEFlags = 1 << 2
	// SQEAsync: always issue asynchronously.
	SQEAsync SQEFlags = 1 << 4
	// SQECQESkipSuccess: post no CQE unless the request fails (5.17).
	SQECQESkipSuccess SQEFlags = 1 << 6

	// sqeBufferSelect (IOSQE_BUFFER_SELECT): the kernel picks the buffer
	// from a group. PrepRecvSelect sets it and SetFlags keeps it.
	sqeBufferSelect SQEFlags = 1 << 5
)

// CQE flags (IORING_CQE_F_*).
const (
	// CQEFMore: more CQEs will follow for this request (multishot).
	CQEFMore uint32 = 1 << 1
	// CQEFBuffer: the request took a provided buffer, whose id is in the
	// flags' upper 16 bits (CQE.Buffer).
	CQEFBuffer uint32 = 1 << 0
	// CQEFBufMore: the request took part of an incremental ring's buffer
	// and the kernel keeps the rest for the next (BufIncremental, 6.12).
	CQEFBufMore uint32 = 1 << 4
	// cqeBufferShift is where the buffer id starts in the flags.
	cqeBufferShift = 16
)
