//go:build linux

package ring

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BufRing is a group of equal-sized buffers that the kernel takes from when
// a request prepared with PrepRecvSelect receives data
// (IORING_REGISTER_PBUF_RING, Linux 5.19). A receive that waits holds no
// buffer, so a thousand idle connections cost no receive memory; the one
// that gets data takes a buffer, names it in its CQE, and the owner gives
// it back with Put once the bytes were used.
//
// Ownership, which is what makes a buffer safe to reuse: a buffer is the
// kernel's from Put (or registration) until a CQE names it, and the
// owner's from that CQE until the next Put of its id. Putting an id the
// owner does not hold would let the kernel write into bytes still being
// read, or list one buffer twice; BufRing keeps a bit per id (and, in an
// incremental ring, where each piece out starts) and panics on such a Put
// rather than corrupt data.
//
// The ring and the buffers live in anonymous mappings outside Go's heap: the
// kernel keeps their addresses, which the garbage collector must never
// move or reclaim, and untouched buffers cost no resident memory.
//
// An incremental ring (BufIncremental, Linux 6.12) lends a buffer a piece
// at a time: each receive takes only the bytes it got, from where the
// last one that named the buffer stopped, and the kernel keeps the rest
// (CQE.BufMore) until a receive fills it. A 64-byte message then costs 64
// bytes of buffer, not a whole one, so a thousand connections receiving at
// once do not run the ring dry. Ownership is then by piece: the owner holds
// each piece from its CQE until its Put, and the buffer goes back to the
// kernel once the kernel has named its last piece and every piece was Put.
// A CQE that names a buffer for 0 bytes lends nothing in such a ring: the
// kernel consumed nothing, although kernels without the 2026 fix for
// liburing issue 1553 post such a CQE without BufMore while the buffer
// stays theirs. A receive with a length limit (PrepRecvSelectMax) must not
// select from such a ring: where the kernel commits a buffer when it picks
// it (io-wq), it commits the limit, not what was received, and the pieces
// that follow start where BufRing does not know.
//
// A BufRing belongs to the Ring's owner goroutine, as the Ring does.
type BufRing struct {
	r      *Ring // constant
	group  uint16
	mask   uint16
	size   int
	inc    bool       // constant: BufIncremental
	mem    []byte     // the shared ring: len(slots) entries
	slots  []bufEntry // aliases mem
	bufs   []byte     // count*size bytes
	tail   uint16     // next slot to fill; published with every Put
	word   *uint32    // the shared word holding the tail (tailWord)
	held   []uint64   // bit id set while the owner holds buffer id (incremental: the kernel named its last piece)
	nHeld  int        // buffers held (incremental: pieces)
	pieces []piece    // incremental rings only, by id
	closed bool
}

// piece is what an incremental ring knows of one buffer since it was last
// given to the kernel.
type piece struct {
	used uint32   // bytes the kernel's CQEs named: the next piece starts here
	out  []uint32 // where the pieces the owner holds start
}

// BufRingFlags modify a buffer ring (the kernel's IOU_PBUF_RING_*).
type BufRingFlags uint16

// BufIncremental asks for incremental consumption (IOU_PBUF_RING_INC,
// Linux 6.12): see BufRing.
const BufIncremental BufRingFlags = 2

// ErrBufRingUnsupported is wrapped by RegisterBufRing's error on a kernel
// without buffer rings (before 5.19: EINVAL).
var ErrBufRingUnsupported = errors.New("ring: provided-buffer rings unsupported (need Linux 5.19)")

// ErrBufIncUnsupported is wrapped by RegisterBufRing's error when it was
// asked for BufIncremental and the kernel refused the registration with
// EINVAL: before Linux 6.12, or without buffer rings at all (register
// without the flag to tell them apart).
var ErrBufIncUnsupported = errors.New("ring: incremental buffer consumption unsupported (need Linux 6.12)")

// RegisterBufRing registers count buffers of size bytes each as group.
// count must be a power of two from 1 to 32768; size positive and at most
// 1 GiB (a CQE's Res is an int32).
func (r *Ring) RegisterBufRing(group uint16, count, size int, flags BufRingFlags) (*BufRing, error) {
	if r.closed {
		return nil, ErrClosed
	}
	if count < 1 || count > 1<<15 || bits.OnesCount(uint(count)) != 1 {
		return nil, fmt.Errorf("ring: buffer ring of %d buffers: want a power of two up to 32768", count)
	}
	if size < 1 || size > 1<<30 {
		return nil, fmt.Errorf("ring: buffer size %d: want 1 byte to 1 GiB", size)
	}
	if flags&^BufIncremental != 0 {
		return nil, fmt.Errorf("ring: buffer ring flags %#x: only BufIncremental is known", uint16(flags))
	}
	ringBytes := count * int(unsafe.Sizeof(bufEntry{}))
	mem, err := unix.Mmap(-1, 0, ringBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("ring: mmap of a %d-byte buffer ring: %w", ringBytes, err)
	}
	bufs, err := unix.Mmap(-1, 0, count*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE)
	if err != nil {
		munmap(mem)
		return nil, fmt.Errorf("ring: mmap of %d buffers of %d bytes: %w", count, size, err)
	}
	b := &BufRing{
		r: r, group: group, mask: uint16(count - 1), size: size, inc: flags&BufIncremental != 0, mem: mem, bufs: bufs,
		slots: unsafe.Slice((*bufEntry)(unsafe.Pointer(&mem[0])), count),
		word:  (*uint32)(unsafe.Pointer(&mem[12])),
		held:  make([]uint64, (count+63)/64),
	}
	if b.inc {
		b.pieces = make([]piece, count)
	}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), ringEntries: uint32(count), bgid: group, flags: uint16(flags)}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing,
		uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if errno != 0 {
		munmap(mem)
		munmap(bufs)
		switch {
		case errno == unix.EINVAL && b.inc:
			return nil, fmt.Errorf("%w: %w", ErrBufIncUnsupported, errno)
		case errno == unix.EINVAL:
			return nil, fmt.Errorf("%w: %w", ErrBufRingUnsupported, errno)
		}
		return nil, fmt.Errorf("ring: io_uring_register(PBUF_RING, group %d): %w", group, errno)
	}
	for id := range count {
		b.fill(uint16(id))
	}
	b.publish()
	return b, nil
}

// Group returns the group id requests name to take from b.
func (b *BufRing) Group() uint16 { return b.group }

// Size returns the bytes per buffer.
func (b *BufRing) Size() int { return b.size }

// Count returns how many buffers b has.
func (b *BufRing) Count() int { return int(b.mask) + 1 }

// Incremental reports whether b lends buffers a piece at a time
// (BufIncremental).
func (b *BufRing) Incremental() bool { return b.inc }

// Held returns how many buffers the owner holds: named by a CQE (Take) and
// not yet Put back. In an incremental ring it counts pieces.
func (b *BufRing) Held() int { return b.nHeld }

// Take records what a CQE that named buffer id handed the owner: n bytes
// (its Res) and, in an incremental ring, whether the kernel keeps the rest
// of the buffer (CQE.BufMore; ignored otherwise). It returns where in the
// buffer the bytes start and whether the owner now holds something to Put:
// always in a ring that is not incremental (the whole buffer, even for 0
// bytes), a piece in an incremental one unless n is 0. It panics on a CQE
// the kernel cannot have posted: a buffer named twice (not incremental),
// or after its last piece, or for more bytes than it has left.
func (b *BufRing) Take(id uint16, n int, more bool) (off int, lent bool) {
	if b.closed {
		panic("ring: Take on a closed BufRing")
	}
	if int(id) > int(b.mask) || n < 0 || n > b.size {
		panic(fmt.Sprintf("ring: Take(%d, %d) outside a ring of %d buffers of %d bytes", id, n, b.Count(), b.size))
	}
	w, bit := id/64, uint64(1)<<(id%64)
	if b.held[w]&bit != 0 {
		panic(fmt.Sprintf("ring: buffer %d of group %d named again while the owner holds it", id, b.group))
	}
	if !b.inc {
		b.held[w] |= bit
		b.nHeld++
		return 0, true
	}
	p := &b.pieces[id]
	if n == 0 {
		return int(p.used), false // see BufRing: nothing was consumed
	}
	if int(p.used)+n > b.size {
		panic(fmt.Sprintf("ring: buffer %d of group %d: a piece of %d bytes after %d of %d", id, b.group, n, p.used, b.size))
	}
	off = int(p.used)
	p.used += uint32(n)
	p.out = append(p.out, uint32(off)) // grows to the most pieces ever out at once, then stays
	b.nHeld++
	if !more {
		b.held[w] |= bit // the kernel is done with it: back once every piece is Put
	}
	return off, true
}

// Bytes returns the n bytes at off in buffer id, which the owner holds
// (Take's answer).
func (b *BufRing) Bytes(id uint16, off, n int) []byte {
	ok := int(id) <= int(b.mask) && n >= 0 && off >= 0 && off+n <= b.size
	if ok && b.inc {
		ok = b.pieces[id].find(off) >= 0 && off+n <= int(b.pieces[id].used)
	} else if ok {
		ok = b.held[id/64]&(1<<(id%64)) != 0
	}
	if !ok {
		panic(fmt.Sprintf("ring: Bytes(%d, %d, %d) of a buffer the owner does not hold", id, off, n))
	}
	start := int(id)*b.size + off
	return b.bufs[start : start+n : start+n]
}

// Put gives back what the owner holds of buffer id: the buffer, or in an
// incremental ring the piece at off (Take's answer; 0 otherwise), and the
// buffer with the last piece once the kernel named its last. It panics if
// the owner holds nothing there (never taken, or put already): see
// BufRing.
func (b *BufRing) Put(id uint16, off int) {
	if b.closed {
		return // the kernel has no ring to take it into any more
	}
	w, bit := id/64, uint64(1)<<(id%64)
	switch {
	case int(id) > int(b.mask) || (!b.inc && (off != 0 || b.held[w]&bit == 0)):
		panic(fmt.Sprintf("ring: Put of buffer %d of group %d, which the owner does not hold", id, b.group))
	case b.inc:
		p := &b.pieces[id]
		i := p.find(off)
		if i < 0 {
			panic(fmt.Sprintf("ring: Put of the piece at %d of buffer %d of group %d, which the owner does not hold", off, id, b.group))
		}
		p.out[i] = p.out[len(p.out)-1]
		p.out = p.out[:len(p.out)-1]
		b.nHeld--
		if len(p.out) > 0 || b.held[w]&bit == 0 {
			return // a piece is still out, or the kernel still fills the rest
		}
		p.used = 0
	default:
		b.nHeld--
	}
	b.held[w] &^= bit
	b.fill(id)
	b.publish()
}

// find returns where in p.out the piece at off is, or -1. The owner holds
// few pieces of one buffer at a time (a loop gives each back in the turn
// that took it): the search starts at the newest.
func (p *piece) find(off int) int {
	for i := len(p.out) - 1; i >= 0; i-- {
		if p.out[i] == uint32(off) {
			return i
		}
	}
	return -1
}

// fill writes buffer id into the next free slot, not yet visible.
func (b *BufRing) fill(id uint16) {
	s := &b.slots[b.tail&b.mask]
	s.addr = uint64(uintptr(unsafe.Pointer(&b.bufs[int(id)*b.size])))
	s.len = uint32(b.size)
	s.bid = id
	b.tail++
}

// publish makes the filled slots visible: the kernel reads the tail with
// smp_load_acquire, so the release store orders the slot writes before
// it. The tail shares its word with slot 0's bid, which only we write.
func (b *BufRing) publish() {
	atomic.StoreUint32(b.word, tailWord(b.slots[0].bid, b.tail))
}

// Close unregisters b and unmaps its memory. The owner first makes sure no
// request that selects from b is still in the kernel (the kernel may be
// writing into a buffer until its CQE is posted): closing the ring first
// does not, since the kernel tears a ring down after its fd closes, not
// before Close returns. It is idempotent; a ring closed before b leaves
// only the unmapping to do.
func (b *BufRing) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	var err error
	if !b.r.closed {
		reg := bufReg{bgid: b.group}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(b.r.fd), unregisterPbufRing,
			uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
		if errno != 0 {
			err = fmt.Errorf("ring: io_uring_register(UNREGISTER_PBUF_RING, group %d): %w", b.group, errno)
		}
	}
	munmap(b.mem)
	munmap(b.bufs)
	b.mem, b.bufs, b.slots, b.word = nil, nil, nil, nil
	return err
}

// SupportsRecvMultishot reports whether a kernel with probe p takes
// multishot RECV (PrepRecvSelect's multishot). The flag is not an opcode
// and has no probe bit of its own; it came in Linux 6.0 with SEND_ZC, whose
// probe bit stands in for it.
func SupportsRecvMultishot(p *Probe) bool { return p.Supports(OpRecv) && p.Supports(OpSendZC) }
