//go:build linux

package ring

import "unsafe"

// This file mirrors the kernel's io_uring ABI (include/uapi/linux/io_uring.h).
// Every struct here is read or written by the kernel byte for byte; the
// size assertions at the bottom fail the build if a field is added or moved.

// Offsets passed to mmap(2) to select which part of the ring to map.
const (
	offSQRing = 0x0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// io_uring_enter(2) flags (IORING_ENTER_*).
const (
	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3
)

// Bits of the SQ ring's flags word, written by the kernel (IORING_SQ_*).
const (
	sqNeedWakeup = 1 << 0 // SQPOLL only; this package does not use SQPOLL
	sqCQOverflow = 1 << 1 // completions wait on the kernel's overflow list
	sqTaskrun    = 1 << 2 // task work is pending (SetupTaskrunFlag rings)
)

// io_uring_register(2) opcodes.
const (
	registerProbe      = 8
	registerPbufRing   = 22
	unregisterPbufRing = 23
)

// probeOpSupported marks an opcode the kernel supports (IO_URING_OP_SUPPORTED).
const probeOpSupported = 1 << 0

// sqringOffsets is struct io_sqring_offsets: where each shared SQ word lives
// inside the SQ ring mapping.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params, filled in by io_uring_setup(2).
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqringOffsets
	cqOff        cqringOffsets
}

// sqe is struct io_uring_sqe (the 64-byte form; SQE128 rings are not
// supported). Unions are flattened to the member this package writes.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64 // off / addr2
	addr        uint64 // addr / splice_off_in
	len         uint32
	opFlags     uint32 // poll32_events / timeout_flags / cancel_flags / ...
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad2        uint64
}

// kernelTimespec is struct __kernel_timespec: 64-bit seconds and
// nanoseconds on every architecture.
type kernelTimespec struct {
	sec  int64
	nsec int64
}

// geteventsArg is struct io_uring_getevents_arg, passed with
// IORING_ENTER_EXT_ARG so a wait can carry a timeout without an SQE.
type geteventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32 // min_wait_usec (6.12+); zero means unused
	ts        uint64 // user pointer to a kernelTimespec
}

// probeOp is struct io_uring_probe_op.
type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

// probeHeader is struct io_uring_probe without its trailing ops array.
type probeHeader struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
}

// probeMaxOps is how many opcodes a probe asks about: an opcode is a byte.
const probeMaxOps = 256

// probeBuf is a probe header followed by room for every opcode.
type probeBuf struct {
	hdr probeHeader
	ops [probeMaxOps]probeOp
}

// bufReg is struct io_uring_buf_reg, IORING_REGISTER_PBUF_RING's argument.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// bufEntry is struct io_uring_buf, one slot of a buffer ring. The ring's
// tail is the resv field of slot 0 (struct io_uring_buf_ring's union).
type bufEntry struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// Compile-time layout checks: each expression is a negative constant, and so
// a build error, when a struct's size differs from the kernel's.
const (
	_ = uint(unsafe.Sizeof(params{})) - 120
	_ = 120 - uint(unsafe.Sizeof(params{}))
	_ = uint(unsafe.Sizeof(sqe{})) - 64
	_ = 64 - uint(unsafe.Sizeof(sqe{}))
	_ = uint(unsafe.Sizeof(CQE{})) - 16
	_ = 16 - uint(unsafe.Sizeof(CQE{}))
	_ = uint(unsafe.Sizeof(geteventsArg{})) - 24
	_ = 24 - uint(unsafe.Sizeof(geteventsArg{}))
	_ = uint(unsafe.Sizeof(probeHeader{})) - 16
	_ = 16 - uint(unsafe.Sizeof(probeHeader{}))
	_ = uint(unsafe.Sizeof(probeOp{})) - 8
	_ = 8 - uint(unsafe.Sizeof(probeOp{}))
	_ = uint(unsafe.Sizeof(bufReg{})) - 40
	_ = 40 - uint(unsafe.Sizeof(bufReg{}))
	_ = uint(unsafe.Sizeof(bufEntry{})) - 16
	_ = 16 - uint(unsafe.Sizeof(bufEntry{}))
)
