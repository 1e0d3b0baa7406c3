package reactor

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// TestOutBufModel drives an outBuf with random appends and writes into a
// socket whose buffer fills, and checks it against a plain byte slice: the
// peer reads exactly the bytes appended, in order; Pending is what was
// appended and not yet written; the chunks held never exceed what is
// pending by a chunk or more (none at all when nothing is pending); and
// since is the latest time recorded while output was pending, never moved
// back.
func TestOutBufModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			rt.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		var b outBuf
		var pool outPool
		var sent, got []byte
		written := 0
		seq := byte(0)
		// since: what setSince last recorded while output stayed
		// pending, which since must return through any consume.
		since, marked := int64(0), false
		drain := func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := unix.Read(fds[1], buf)
				if n <= 0 || err != nil {
					return
				}
				got = append(got, buf[:n]...)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				n := rapid.IntRange(0, 3*outChunkSize).Draw(rt, "n")
				p := make([]byte, n)
				for i := range p {
					p[i] = seq
					seq++
				}
				b.append(p, &pool)
				sent = append(sent, p...)
			},
			"write": func(rt *rapid.T) {
				m, err := b.writeTo(fds[0], &pool)
				if err != nil && err != unix.EAGAIN {
					rt.Fatal(err)
				}
				written += m
			},
			"send": func(rt *rapid.T) {
				// The ring's path: one chunk's bytes, then consume.
				p := b.firstBytes()
				if len(p) == 0 {
					return
				}
				m, err := unix.Write(fds[0], p)
				if err != nil && err != unix.EAGAIN {
					rt.Fatal(err)
				}
				if m > 0 {
					b.consume(m, &pool)
					written += m
				}
			},
			"mark": func(rt *rapid.T) {
				t := rapid.Int64Range(1, 1<<62).Draw(rt, "t")
				b.setSince(t)
				// Since only moves forward while output is pending.
				if b.len() > 0 && (!marked || t > since) {
					since, marked = t, true
				}
			},
			"drain": func(*rapid.T) { drain() },
			"": func(rt *rapid.T) {
				if b.len() != len(sent)-written {
					rt.Fatalf("%d pending, but %d appended and %d written", b.len(), len(sent), written)
				}
				// At most a partly sent first chunk and a partly filled last.
				if b.held() >= b.len()+2*outChunkSize || (b.len() == 0 && b.held() != 0) {
					rt.Fatalf("%d pending in %d bytes of chunks", b.len(), b.held())
				}
				checkOutLinks(rt, &b)
				if b.len() == 0 {
					marked = false
					if b.since() != 0 {
						rt.Fatalf("nothing pending, yet pending since %d", b.since())
					}
				} else if marked && b.since() != since {
					rt.Fatalf("pending since %d, but %d was recorded", b.since(), since)
				}
			},
		})
		for b.len() > 0 {
			if _, err := b.writeTo(fds[0], &pool); err != nil && err != unix.EAGAIN {
				rt.Fatal(err)
			}
			drain()
		}
		drain()
		if !bytes.Equal(got, sent) {
			rt.Fatalf("the peer read %d bytes, %d appended: not the same bytes in the same order", len(got), len(sent))
		}
		if b.held() != 0 || b.first != nil {
			rt.Fatalf("an empty outBuf holds %d bytes of chunks", b.held())
		}
	})
}

// checkOutLinks: b's chunks, followed from the first, are b.n, and the
// first names the last.
func checkOutLinks(rt *rapid.T, b *outBuf) {
	if b.n == 0 {
		if b.first != nil {
			rt.Fatalf("no chunks counted, but a first one linked")
		}
		return
	}
	k, last := uint32(0), (*outChunk)(nil)
	for c := b.first; c != nil; c = c.next {
		k, last = k+1, c
		if c != b.first && c.last != nil {
			rt.Fatalf("chunk %d names a last; only the first may", k)
		}
	}
	if k != b.n || b.first.last != last {
		rt.Fatalf("%d chunks linked, %d counted; the first names %p as last, the last is %p", k, b.n, b.first.last, last)
	}
}

// TestOutBufAbandonKeepsItsChunk: an abandoned buffer (its first chunk
// lent to a send the kernel may still read) reports nothing pending and
// keeps that chunk through a consume of nothing; reset gives it back.
func TestOutBufAbandonKeepsItsChunk(t *testing.T) {
	var b outBuf
	var pool outPool
	b.append(make([]byte, 3*outChunkSize/2), &pool)
	first := b.first
	b.abandon(&pool)
	if b.len() != 0 || b.first != first || first.last != first || first.next != nil {
		t.Fatalf("after abandon: %d pending, first %p (want %p), last %p, next %p", b.len(), b.first, first, first.last, first.next)
	}
	b.consume(0, &pool)
	if b.first != first || first.last != first {
		t.Fatal("a consume of nothing gave the abandoned chunk back")
	}
	b.reset(&pool)
	if b.first != nil || first.last != nil {
		t.Fatal("reset kept the chunk")
	}
}
