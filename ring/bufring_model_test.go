//go:build linux

package ring

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// simBufRing is a BufRing with no kernel behind it: its shared ring is
// ordinary memory that simKernel reads and writes the way the kernel does
// (io_uring/kbuf.c), so that the owner's side can be driven through long
// random runs and checked at every step.
func simBufRing(count, size int, inc bool) *BufRing {
	mem := make([]byte, count*int(unsafe.Sizeof(bufEntry{})))
	b := &BufRing{
		group: 1, mask: uint16(count - 1), size: size, inc: inc, mem: mem,
		bufs:  make([]byte, count*size),
		slots: unsafe.Slice((*bufEntry)(unsafe.Pointer(&mem[0])), count),
		word:  (*uint32)(unsafe.Pointer(&mem[12])),
		held:  make([]uint64, (count+63)/64),
	}
	if inc {
		b.pieces = make([]piece, count)
	}
	for id := range count {
		b.fill(uint16(id))
	}
	b.publish()
	return b
}

// simKernel consumes b's ring as the kernel does: from its head up to the
// tail the owner published, a whole buffer per receive, or (incremental)
// the bytes a receive got, moving the head entry's addr and len and
// stepping past it once it is empty.
type simKernel struct {
	b    *BufRing
	head uint16
}

// recv receives n bytes (n > 0), writing fill into them, and returns the
// CQE's buffer id, Res and BufMore; ok is false for ENOBUFS.
func (k *simKernel) recv(n int, fill byte) (id uint16, res int, more, ok bool) {
	tail := k.b.slots[0].resv
	if k.head == tail {
		return 0, 0, false, false
	}
	e := &k.b.slots[k.head&k.b.mask]
	take := min(n, int(e.len))
	start := int(uintptr(e.addr) - uintptr(unsafe.Pointer(&k.b.bufs[0])))
	for i := range take {
		k.b.bufs[start+i] = fill
	}
	if !k.b.inc {
		k.head++
		return e.bid, take, false, true
	}
	e.len -= uint32(take)
	if e.len > 0 {
		e.addr += uint64(take)
		return e.bid, take, true, true
	}
	k.head++
	return e.bid, take, false, true
}

// writable returns the byte ranges of b.bufs the kernel may write next:
// what is left of each entry between its head and the tail.
func (k *simKernel) writable() [][2]int {
	var out [][2]int
	for h := k.head; h != k.b.slots[0].resv; h++ {
		e := k.b.slots[h&k.b.mask]
		start := int(uintptr(e.addr) - uintptr(unsafe.Pointer(&k.b.bufs[0])))
		out = append(out, [2]int{start, start + int(e.len)})
	}
	return out
}

// TestBufRingModel drives a BufRing, whole and incremental, through
// random receives of 1 to 1.5 buffers (and, incremental, receives of 0
// bytes posted the way kernels before the fix for liburing #1553 post
// them: a buffer named, no BufMore, nothing consumed) against simKernel,
// the owner keeping 3 to 12 pieces (at times more than the ring's 8
// buffers) and giving them back in random order.
// After every step: no byte the owner holds is one the kernel may write,
// no buffer is listed twice for the kernel, every piece still reads what
// the kernel wrote into it, and Held counts the pieces out. A buffer
// handed back while a piece of it is held, or before the kernel named its
// last piece, breaks the first; a wrong offset, the third.
func TestBufRingModel(t *testing.T) {
	for _, inc := range []bool{false, true} {
		t.Run(fmt.Sprintf("incremental=%v", inc), func(t *testing.T) {
			const count, size = 8, 64
			rng := rand.New(rand.NewPCG(7, 8))
			b := simBufRing(count, size, inc)
			k := &simKernel{b: b}
			type held struct {
				id      uint16
				off, n  int
				content []byte
			}
			var out []held
			var steps, pieces, empties, noBufs, returned int
			keep := 6 // pieces the owner keeps at most
			put := func(i int) {
				h := out[i]
				if got := b.Bytes(h.id, h.off, h.n); !bytes.Equal(got, h.content) {
					t.Fatalf("step %d: piece %+v changed while held", steps, h)
				}
				before := b.slots[0].resv
				b.Put(h.id, h.off)
				if b.slots[0].resv != before {
					returned++
				}
				out = append(out[:i], out[i+1:]...)
			}
			for steps = 0; steps < 20000; steps++ {
				switch r := rng.IntN(10); {
				case r < 6:
					fill := byte(steps)
					id, res, more, ok := k.recv(1+rng.IntN(size*3/2), fill)
					if !ok {
						noBufs++
						for len(out) > 0 {
							put(rng.IntN(len(out)))
						}
						continue
					}
					off, lent := b.Take(id, res, more)
					if !lent {
						t.Fatalf("step %d: Take of %d bytes lent nothing", steps, res)
					}
					got := b.Bytes(id, off, res)
					if !bytes.Equal(got, bytes.Repeat([]byte{fill}, res)) {
						t.Fatalf("step %d: buffer %d at %d holds %v, not the %d bytes the kernel wrote", steps, id, off, got, res)
					}
					pieces++
					out = append(out, held{id, off, res, bytes.Clone(got)})
				case r < 7 && inc && k.head != b.slots[0].resv:
					// A receive of 0 bytes: it names the head buffer
					// and consumes nothing.
					id := b.slots[k.head&b.mask].bid
					if _, lent := b.Take(id, 0, false); lent {
						t.Fatalf("step %d: a receive of 0 bytes lent a piece", steps)
					}
					empties++
				default:
					if len(out) > 0 {
						put(rng.IntN(len(out)))
					}
				}
				if steps%1000 == 0 {
					keep = 3 + rng.IntN(10) // at times more than the ring has
				}
				for len(out) > keep {
					put(rng.IntN(len(out)))
				}
				// The invariants.
				listed := map[uint16]bool{}
				for h := k.head; h != b.slots[0].resv; h++ {
					id := b.slots[h&b.mask].bid
					if listed[id] {
						t.Fatalf("step %d: buffer %d listed twice for the kernel", steps, id)
					}
					listed[id] = true
				}
				for _, w := range k.writable() {
					for _, h := range out {
						s := int(h.id)*size + h.off
						if s < w[1] && w[0] < s+h.n {
							t.Fatalf("step %d: the kernel may write bytes %d..%d, and the owner holds %d..%d (%+v)", steps, w[0], w[1], s, s+h.n, h)
						}
					}
				}
				if b.Held() != len(out) {
					t.Fatalf("step %d: Held() = %d with %d pieces out", steps, b.Held(), len(out))
				}
			}
			for len(out) > 0 {
				put(0)
			}
			if n := uint16(b.slots[0].resv - k.head); int(n) != count {
				t.Fatalf("at the end the kernel has %d buffers of %d", n, count)
			}
			t.Logf("%d steps: %d pieces, %d receives of 0 bytes, %d ENOBUFS, %d buffers returned", steps, pieces, empties, noBufs, returned)
		})
	}
}
