// Package ring is oneshot's own small io_uring binding, written over
// golang.org/x/sys/unix without cgo and with liburing's semantics. It sets
// up a ring, prepares the few requests the reactor needs (NOP, one-shot
// POLL_ADD, POLL_REMOVE, ASYNC_CANCEL, TIMEOUT, RECV from a provided-buffer
// ring (BufRing, its buffers taken whole or a piece at a time), multishot
// or not, SEND, and multishot ACCEPT), submits
// them, waits with a timeout, and reaps completions in batches. It knows
// nothing of polls or requests above that.
//
// # Ownership
//
// A Ring has one owner at a time: GetSQE, the Prep methods, Submit,
// SubmitAndWait, Reap and ReapPosted must not run concurrently. Enters, Features,
// Flags and the size getters may be called from anywhere. Close must not race the
// other methods; after it, they return ErrClosed or zero and never touch
// the unmapped memory.
//
// # Threads
//
// With SetupSingleIssuer the kernel binds the ring to the OS thread that
// called New, and with SetupDeferTaskrun completions are posted only when
// that thread calls io_uring_enter with GETEVENTS (SubmitAndWait). Callers
// using those flags must call runtime.LockOSThread before New and make every
// call on that goroutine, or the kernel answers EEXIST.
//
// # Memory
//
// The SQ ring, CQ ring and SQE array are mmap'd from the kernel (one
// mapping for both rings under FeatSingleMmap), outside the Go heap. The
// words the kernel shares with us are accessed only through the helpers in
// barrier.go, each of which names the kernel barrier it pairs with; the
// indices we alone advance are cached in the Ring. SQEs are prepared in Go
// memory and copied into the shared array by Submit, so a stale *SQE never
// aliases a slot the kernel may be reading.
//
// # Slot states
//
// SQ position i (a uint32 that wraps) is in exactly one state, decided by
// the private indices sqeFlushed <= sqeTail and the kernel's SQ head:
//
//	state      condition                       owner     leaves by
//	free       i >= sqeTail, i-head < entries  nobody    GetSQE (→ staged)
//	staged     sqeFlushed <= i < sqeTail       caller    Submit copies it (→ published)
//	published  head <= i < sqeFlushed          kernel    kernel consumes it (→ free)
//
// GetSQE refuses (ErrSQFull) when sqeTail-head == entries, so a published
// slot is never handed out again. CQ position j is ready (ours to read)
// while cqHead <= j < the kernel's CQ tail, and the kernel's to fill
// otherwise; Reap moves the head past a whole batch with one store.
//
// # Completion flow
//
//	GetSQE ─ Prep* ─► staged ─ Submit ─► SQ (kernel consumes) ─► CQ ─ Reap ─► caller
//	                                         │ CQ full
//	                                         └─► kernel overflow list ─ Reap/Submit flush ─► CQ
//
// A completion is never dropped on kernels with FeatNoDrop: when the CQ is
// full the kernel keeps it on its overflow list and flags the SQ ring, and
// Reap and Submit ask the kernel to move it into the CQ once there is room
// (ReapPosted leaves that to the caller's next enter).
// Dropped reports the kernel's own count of completions it lost anyway.
//
// # Availability
//
// New fails with an *UnavailableError when io_uring_setup fails, most often
// with EPERM under a seccomp profile (Docker's default denies io_uring) or
// kernel.io_uring_disabled, or ENOSYS on a kernel without io_uring. Check
// sets up a tiny ring and probes for the opcodes a caller needs.
//
// The package supports 64-bit and 32-bit Linux; SQE128/CQE32 rings, SQPOLL,
// IOPOLL, NO_SQARRAY and NO_MMAP are out of scope, and New refuses their
// flags with ErrUnsupportedFlags.
package ring
