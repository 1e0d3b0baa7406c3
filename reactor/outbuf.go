//go:build linux

package reactor

import (
	"sync"

	"golang.org/x/sys/unix"
)

// outBuf is a Conn's pending output: a queue of fixed-size chunks taken from
// its Listener's pool. It holds at most one partly filled chunk beyond what
// is pending, never moves a byte once queued, and leaves nothing behind for
// the garbage collector as it grows. A contiguous buffer, regrown while a
// peer read slowly, left behind up to its own size at each growth: 64
// never-reading peers at --max-pending 1MiB cost 1.3-1.7 MB of heap each
// for 1.07 MB of pending echo. Guarded by its Conn's mu.
//
// The pending count is derived (len), not stored, and the chunks are
// linked through their own headers (the first one also names the last),
// so the queue costs its Conn 16 bytes and makes no allocation of its own:
// a slice of chunk pointers cost 24, and allocated its array each time
// output came to be pending.
type outBuf struct {
	first *outChunk // nil when b holds nothing
	head  uint16    // read offset in first
	tail  uint16    // fill of the last chunk (first.last)
	n     uint32    // chunks held
}

// outChunkSize trades the chunks a large backlog needs (one iovec each, up
// to outIovecs a writev) against the slack of the last one.
const (
	outChunkSize = 16 << 10
	outIovecs    = 16
)

// outChunk is one chunk: its bytes, a malloc size class of their own, and
// a header beside them, allocated and pooled together. The bytes are not
// in the header's object: a header inside the 16 KiB would leave a 16 KiB
// message two chunks, and a send through the ring two sends.
type outChunk struct {
	b    *[outChunkSize]byte
	next *outChunk // the chunk after this one in its queue
	// Kept on a queue's first chunk only: its last, and the nanotime of
	// the queue's last progress or of its output becoming pending (what
	// WriteTimeout measures). Here, not in the Conn: they mean something
	// only while output is pending, and an idle Conn is a size class
	// smaller without them.
	last  *outChunk
	since int64
	// loan: set on a chunk whose bytes are a receive buffer the loop lent
	// (loan.go); it goes back to the kernel where a chunk goes back to
	// the pool.
	loan *outLoan
}

// outPool recycles a Listener's chunks; a pool per Listener, not per
// process, so that nothing in the package is global.
type outPool struct{ p, loans sync.Pool }

func (op *outPool) get() *outChunk {
	if c, ok := op.p.Get().(*outChunk); ok {
		return c
	}
	return &outChunk{b: new([outChunkSize]byte)}
}

func (op *outPool) put(c *outChunk) {
	if c.loan != nil {
		op.putLoan(c)
		return
	}
	c.next, c.last, c.since = nil, nil, 0 // a pooled chunk keeps no queue alive
	op.p.Put(c)
}

// len returns the bytes pending.
func (b *outBuf) len() int {
	if b.n == 0 {
		return 0
	}
	return (int(b.n)-1)*outChunkSize - int(b.head) + int(b.tail)
}

// since returns the nanotime of the last output progress, or of output
// becoming pending; 0 when nothing is pending.
func (b *outBuf) since() int64 {
	if b.len() == 0 {
		return 0
	}
	return b.first.since
}

// setSince records output progress, or output becoming pending, at t. With
// nothing pending it does nothing: there is nothing to time. It never moves
// since back: a stamp from the loop's turn clock (loop.now) may be older
// than one a Write or a flush took from the clock itself.
func (b *outBuf) setSince(t int64) {
	if b.n != 0 && t > b.first.since {
		b.first.since = t
	}
}

// held returns the bytes of chunks b holds.
func (b *outBuf) held() int { return int(b.n) * outChunkSize }

// append queues p.
func (b *outBuf) append(p []byte, pool *outPool) {
	for len(p) > 0 {
		if b.n == 0 || b.tail == outChunkSize {
			c := pool.get()
			if b.n == 0 {
				b.first = c
			} else {
				b.first.last.next = c
			}
			b.first.last = c
			b.n++
			b.tail = 0
		}
		k := copy(b.first.last.b[b.tail:], p)
		b.tail += uint16(k)
		p = p[k:]
	}
}

// lendFirst makes the loaned chunk c, whose bytes [head, head+n) are
// pending, b's first and only one (b is empty). Later appends fill the
// rest of the buffer, which is the Conn's until the chunk goes back.
func (b *outBuf) lendFirst(c *outChunk, head, n int) {
	c.last = c
	b.first, b.n = c, 1
	b.head, b.tail = uint16(head), uint16(head+n)
}

// writeTo writes what is pending to fd with one writev of up to outIovecs
// chunks, drops what the kernel took, and returns how much that was.
func (b *outBuf) writeTo(fd int, pool *outPool) (int, error) {
	var iov [outIovecs]unix.Iovec
	cnt := 0
	for c := b.first; c != nil && cnt < outIovecs; c = c.next {
		lo, hi := 0, outChunkSize
		if c == b.first {
			lo = int(b.head)
		}
		if c.next == nil {
			hi = int(b.tail)
		}
		if hi > lo {
			iov[cnt].Base = &c.b[lo]
			iov[cnt].SetLen(hi - lo)
			cnt++
		}
	}
	if cnt == 0 {
		return 0, nil
	}
	r, errno := rawWritev(fd, iov[:cnt])
	if errno != 0 {
		return 0, errno
	}
	b.consume(int(r), pool)
	return int(r), nil
}

// consume drops the first k pending bytes, returning emptied chunks.
// Consuming nothing changes nothing: an abandoned buffer (abandon), which
// holds a chunk with nothing pending, keeps it.
func (b *outBuf) consume(k int, pool *outPool) {
	if k == 0 {
		return
	}
	for k > 0 {
		end := outChunkSize
		if b.n == 1 {
			end = int(b.tail)
		}
		avail := end - int(b.head)
		if k < avail {
			b.head += uint16(k)
			return
		}
		k -= avail
		c := b.first
		if c.next != nil {
			c.next.last, c.next.since = c.last, c.since
		}
		b.first = c.next
		b.n--
		b.head = 0
		pool.put(c)
	}
	if b.len() == 0 {
		b.reset(pool)
	}
}

// firstBytes returns the pending bytes of the first chunk: what one send takes.
func (b *outBuf) firstBytes() []byte {
	if b.len() == 0 {
		return nil
	}
	end := outChunkSize
	if b.n == 1 {
		end = int(b.tail)
	}
	return b.first.b[b.head:end]
}

// abandon drops everything pending but keeps the first chunk out of the
// pool, referenced by b, for a send the kernel may still be reading.
func (b *outBuf) abandon(pool *outPool) {
	if b.n == 0 {
		return
	}
	for c := b.first.next; c != nil; {
		next := c.next
		pool.put(c)
		c = next
	}
	b.first.next, b.first.last = nil, b.first
	b.head, b.tail, b.n = 0, 0, 1
}

// reset drops everything pending and gives the chunks back, so that an idle
// Conn holds none.
func (b *outBuf) reset(pool *outPool) {
	for c := b.first; c != nil; {
		next := c.next
		pool.put(c)
		c = next
	}
	*b = outBuf{}
}
