//go:build linux

package ring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config says what ring to set up.
type Config struct {
	// Entries is the SQ size; the kernel rounds it up to a power of two.
	// Zero means 64.
	Entries uint32
	// CQEntries is the CQ size (at least Entries; rounded up to a power of
	// two). Zero leaves the kernel's default, twice the SQ size.
	CQEntries uint32
	// Flags are extra setup flags; see SetupFlags for what each demands of
	// the caller (SetupSingleIssuer: call New on a locked OS thread).
	Flags SetupFlags

	// twoMmaps maps the CQ ring separately even under FeatSingleMmap, so
	// tests cover the path of kernels before 5.4.
	twoMmaps bool
}

// defaultEntries is the SQ size when Config.Entries is zero.
const defaultEntries = 64

// Ring is one io_uring instance: its fd, the mapped SQ and CQ rings, and a
// staging array of SQEs in Go memory.
//
// A Ring has one owner: methods must not be called concurrently, except
// Enters, Features, Flags, SQEntries and CQEntries, which read values that
// are constant or atomic. Close must not race any other method; after Close,
// every method returns ErrClosed (or a zero value) instead of touching the
// unmapped rings.
//
// Why stage SQEs: GetSQE hands out a pointer into r.staged, and Submit copies
// prepared entries into the shared SQE array just before publishing the SQ
// tail. A stale *SQE therefore never points at a slot the kernel may be
// reading or at an unmapped page, and TIMEOUT's timespec can live next to its
// SQE in memory that does not move. The copy is 64 bytes per request.
type Ring struct {
	// Constant after New (fd is -1 after Close).
	fd        int
	flags     SetupFlags
	features  Features
	sqEntries uint32
	sqMask    uint32
	cqEntries uint32
	cqMask    uint32

	// Mappings, released by Close. cqMem aliases sqMem under FeatSingleMmap.
	sqMem, cqMem, sqesMem []byte

	// Shared words inside the mappings. Only the helpers in barrier.go
	// read or write them.
	kSQHead     *uint32 // written by the kernel as it consumes SQEs
	kSQTail     *uint32 // written by us to publish SQEs
	kSQFlags    *uint32 // written by the kernel (IORING_SQ_*)
	kCQHead     *uint32 // written by us as we consume CQEs
	kCQTail     *uint32 // written by the kernel as it posts CQEs
	kCQOverflow *uint32 // completions the kernel dropped (0 with FeatNoDrop)

	// Shared arrays: the kernel reads kSQEs, we read cqes.
	kSQEs []sqe
	cqes  []CQE

	// Private indices, owned by the ring's owner. sqeTail counts SQEs handed
	// out by GetSQE; sqeFlushed counts those copied to kSQEs and published;
	// cqHead mirrors *kCQHead, which only we write.
	sqeTail    uint32
	sqeFlushed uint32
	cqHead     uint32

	staged []SQE // Go-memory SQEs, indexed like kSQEs

	// Wait state, kept in the Ring (heap memory that does not move) because
	// the kernel reads it through pointers stored as integers.
	waitTS  kernelTimespec
	waitArg geteventsArg

	// noExtArg forces the TIMEOUT-SQE fallback (set when the kernel lacks
	// FeatExtArg, or by tests); sawInternal is set once such an SQE was
	// submitted, so Reap filters their CQEs.
	noExtArg    bool
	sawInternal bool

	closed bool
	enters atomic.Uint64
}

// New sets up a ring. Flags outside the SetupFlags constants are refused
// with ErrUnsupportedFlags before any syscall. A failing io_uring_setup (EPERM under a seccomp
// profile or kernel.io_uring_disabled, ENOSYS on a kernel without io_uring,
// EINVAL for flags the kernel does not know) returns an *UnavailableError
// that wraps the errno.
func New(cfg Config) (*Ring, error) {
	entries := cfg.Entries
	if entries == 0 {
		entries = defaultEntries
	}
	flags := cfg.Flags
	if bad := flags &^ supportedFlags; bad != 0 {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedFlags, bad)
	}
	if cfg.CQEntries != 0 {
		flags |= SetupCQSize
	}
	p := params{flags: uint32(flags), cqEntries: cfg.CQEntries}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, unavailable("io_uring_setup", errno, flags)
	}
	r := &Ring{
		fd:        int(fd),
		flags:     flags,
		features:  Features(p.features),
		sqEntries: p.sqEntries,
		cqEntries: p.cqEntries,
	}
	if err := r.mapRings(&p, cfg.twoMmaps); err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	r.noExtArg = !r.features.Has(FeatExtArg)
	r.waitArg.ts = uint64(uintptr(unsafe.Pointer(&r.waitTS)))
	return r, nil
}

// mapRings maps the SQ ring, CQ ring (one mapping under FeatSingleMmap) and
// the SQE array, and points the shared-word fields into them.
func (r *Ring) mapRings(p *params, twoMmaps bool) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(CQE{}))
	single := r.features.Has(FeatSingleMmap) && !twoMmaps
	if single && cqSize > sqSize {
		sqSize = cqSize
	}
	const prot = unix.PROT_READ | unix.PROT_WRITE
	const mflags = unix.MAP_SHARED | unix.MAP_POPULATE
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, mflags); err != nil {
		return mmapError(err, r.flags)
	}
	if single {
		r.cqMem = r.sqMem
	} else if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, mflags); err != nil {
		return mmapError(err, r.flags)
	}
	sqesSize := int(p.sqEntries) * int(unsafe.Sizeof(sqe{}))
	if r.sqesMem, err = unix.Mmap(r.fd, offSQEs, sqesSize, prot, mflags); err != nil {
		return mmapError(err, r.flags)
	}

	sq := unsafe.Pointer(unsafe.SliceData(r.sqMem))
	cq := unsafe.Pointer(unsafe.SliceData(r.cqMem))
	word := func(base unsafe.Pointer, off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r.kSQHead = word(sq, p.sqOff.head)
	r.kSQTail = word(sq, p.sqOff.tail)
	r.kSQFlags = word(sq, p.sqOff.flags)
	r.sqMask = *word(sq, p.sqOff.ringMask)
	r.kCQHead = word(cq, p.cqOff.head)
	r.kCQTail = word(cq, p.cqOff.tail)
	r.kCQOverflow = word(cq, p.cqOff.overflow)
	r.cqMask = *word(cq, p.cqOff.ringMask)
	if r.sqMask != r.sqEntries-1 || r.cqMask != r.cqEntries-1 {
		panic(fmt.Sprintf("ring: kernel ring masks %#x/%#x do not match entries %d/%d",
			r.sqMask, r.cqMask, r.sqEntries, r.cqEntries))
	}
	r.kSQEs = unsafe.Slice((*sqe)(unsafe.Pointer(unsafe.SliceData(r.sqesMem))), p.sqEntries)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(cq, p.cqOff.cqes)), p.cqEntries)

	// The SQ array maps ring positions to SQE indices. Filling it with the
	// identity once lets Submit publish by storing the tail alone.
	array := unsafe.Slice((*uint32)(unsafe.Add(sq, p.sqOff.array)), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.staged = make([]SQE, p.sqEntries)
	r.cqHead = loadAcquire(r.kCQHead)
	r.sqeTail = loadAcquire(r.kSQHead)
	r.sqeFlushed = r.sqeTail
	return nil
}

func mmapError(err error, flags SetupFlags) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unavailable("mmap", errno, flags)
	}
	return fmt.Errorf("ring: mmap: %w", err)
}

// unmap releases whatever mapRings mapped.
func (r *Ring) unmap() {
	munmap(r.sqesMem)
	if r.sqMem == nil || unsafe.SliceData(r.cqMem) != unsafe.SliceData(r.sqMem) {
		munmap(r.cqMem)
	}
	munmap(r.sqMem)
	r.sqMem, r.cqMem, r.sqesMem = nil, nil, nil
	r.kSQEs, r.cqes = nil, nil
	r.kSQHead, r.kSQTail, r.kSQFlags = nil, nil, nil
	r.kCQHead, r.kCQTail, r.kCQOverflow = nil, nil, nil
}

// munmap releases a mapping made by mapRings. It cannot fail for a mapping
// we made unless our bookkeeping is corrupt, which is a bug.
func munmap(m []byte) {
	if m == nil {
		return
	}
	if err := unix.Munmap(m); err != nil {
		panic(fmt.Sprintf("ring: munmap of a ring mapping (%d bytes) failed: %v", len(m), err))
	}
}

// Close unmaps the rings and closes the ring's fd; the kernel then cancels
// whatever is still in flight. A second Close returns ErrClosed.
func (r *Ring) Close() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	r.unmap()
	fd := r.fd
	r.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("ring: close: %w", err)
	}
	return nil
}

// Fd returns the ring's file descriptor, or -1 after Close.
func (r *Ring) Fd() int { return r.fd }

// Features returns what the kernel reported at setup.
func (r *Ring) Features() Features { return r.features }

// Flags returns the setup flags the ring was created with, SetupCQSize
// included when Config.CQEntries was set.
func (r *Ring) Flags() SetupFlags { return r.flags }

// SQEntries returns the SQ size the kernel chose.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries returns the CQ size the kernel chose.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// Enters returns how many io_uring_enter syscalls the ring has made. It is
// safe to call from any goroutine.
func (r *Ring) Enters() uint64 { return r.enters.Load() }

// Dropped returns how many completions the kernel could not post and
// dropped (the CQ ring's overflow counter). With FeatNoDrop it stays 0
// unless the kernel ran out of memory for its overflow list.
func (r *Ring) Dropped() uint32 {
	if r.closed {
		return 0
	}
	return loadRelaxed(r.kCQOverflow)
}
