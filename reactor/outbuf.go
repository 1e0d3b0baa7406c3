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
// The pending count is derived (len), not stored: an idle Conn is one size
// class smaller without it.
type outBuf struct {
	chunks []*outChunk // pending: chunks[0][head:], whole middle chunks, the last up to tail
	head   int32       // read offset in chunks[0]
	tail   int32       // fill of the last chunk
}

// outChunkSize trades the chunks a large backlog needs (one iovec each, up
// to outIovecs a writev) against the slack of the last one.
const (
	outChunkSize = 16 << 10
	outIovecs    = 16
)

type outChunk [outChunkSize]byte

// outPool recycles a Listener's chunks; a pool per Listener, not per
// process, so that nothing in the package is global.
type outPool struct{ p sync.Pool }

func (op *outPool) get() *outChunk {
	if c, ok := op.p.Get().(*outChunk); ok {
		return c
	}
	return new(outChunk)
}

func (op *outPool) put(c *outChunk) { op.p.Put(c) }

// len returns the bytes pending.
func (b *outBuf) len() int {
	if len(b.chunks) == 0 {
		return 0
	}
	return (len(b.chunks)-1)*outChunkSize - int(b.head) + int(b.tail)
}

// held returns the bytes of chunks b holds.
func (b *outBuf) held() int { return len(b.chunks) * outChunkSize }

// append queues p.
func (b *outBuf) append(p []byte, pool *outPool) {
	for len(p) > 0 {
		if len(b.chunks) == 0 || b.tail == outChunkSize {
			b.chunks = append(b.chunks, pool.get())
			b.tail = 0
		}
		k := copy(b.chunks[len(b.chunks)-1][b.tail:], p)
		b.tail += int32(k)
		p = p[k:]
	}
}

// writeTo writes what is pending to fd with one writev of up to outIovecs
// chunks, drops what the kernel took, and returns how much that was.
func (b *outBuf) writeTo(fd int, pool *outPool) (int, error) {
	var iov [outIovecs]unix.Iovec
	cnt := 0
	for i, c := range b.chunks {
		if cnt == outIovecs {
			break
		}
		lo, hi := 0, outChunkSize
		if i == 0 {
			lo = int(b.head)
		}
		if i == len(b.chunks)-1 {
			hi = int(b.tail)
		}
		if hi > lo {
			iov[cnt].Base = &c[lo]
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
func (b *outBuf) consume(k int, pool *outPool) {
	for k > 0 {
		end := outChunkSize
		if len(b.chunks) == 1 {
			end = int(b.tail)
		}
		avail := end - int(b.head)
		if k < avail {
			b.head += int32(k)
			return
		}
		k -= avail
		pool.put(b.chunks[0])
		b.chunks[0] = nil
		b.chunks = b.chunks[1:]
		b.head = 0
	}
	if b.len() == 0 {
		b.reset(pool)
	}
}

// first returns the pending bytes of the first chunk: what one send takes.
func (b *outBuf) first() []byte {
	if b.len() == 0 {
		return nil
	}
	end := outChunkSize
	if len(b.chunks) == 1 {
		end = int(b.tail)
	}
	return b.chunks[0][b.head:end]
}

// abandon drops everything pending but keeps the first chunk out of the
// pool, referenced by b, for a send the kernel may still be reading.
func (b *outBuf) abandon(pool *outPool) {
	if len(b.chunks) == 0 {
		return
	}
	for _, c := range b.chunks[1:] {
		pool.put(c)
	}
	*b = outBuf{chunks: b.chunks[:1:1]}
}

// reset drops everything pending and gives the chunks back, so that an idle
// Conn holds none (nor the slice that listed them).
func (b *outBuf) reset(pool *outPool) {
	for _, c := range b.chunks {
		pool.put(c)
	}
	*b = outBuf{}
}
