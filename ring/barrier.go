//go:build linux

package ring

import "sync/atomic"

// The words the kernel shares with us (SQ head/tail/flags, CQ head/tail,
// the overflow counter) are read and written only through these helpers.
// Each says which kernel access it pairs with, in the terms of liburing's
// barrier.h and the kernel's io_uring.c. Go's sync/atomic loads and stores
// are sequentially consistent, which is at least as strong as the
// acquire/release pairing the kernel needs; the names record the intent.
//
// Private cached indices (r.sqeTail, r.sqeFlushed, r.cqHead) are plain
// fields of the Ring owned by its owner; they need no ordering.

// loadAcquire reads a word the kernel publishes with smp_store_release: the
// CQ tail (after it wrote the CQEs it covers, io_commit_cqring) and the SQ
// head (after it finished reading the SQEs it covers). Reads of CQEs or
// reuse of SQE slots must come after this load.
func loadAcquire(p *uint32) uint32 { return atomic.LoadUint32(p) }

// storeRelease publishes a word the kernel reads with smp_load_acquire: the
// SQ tail (after we wrote the SQEs it covers, so the kernel sees them
// complete) and the CQ head (after we finished copying the CQEs it frees, so
// the kernel cannot overwrite them while we read).
func storeRelease(p *uint32, v uint32) { atomic.StoreUint32(p, v) }

// loadRelaxed reads a word the kernel changes with atomic_or/READ_ONCE and
// that orders nothing else: the SQ flags word and the CQ overflow counter
// (liburing: IO_URING_READ_ONCE).
func loadRelaxed(p *uint32) uint32 { return atomic.LoadUint32(p) }
