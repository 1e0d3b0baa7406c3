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
// appended and not yet written; and the chunks held never exceed what is
// pending by a chunk or more (none at all when nothing is pending).
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
			"drain": func(*rapid.T) { drain() },
			"": func(rt *rapid.T) {
				if b.len() != len(sent)-written {
					rt.Fatalf("%d pending, but %d appended and %d written", b.len(), len(sent), written)
				}
				// At most a partly sent first chunk and a partly filled last.
				if b.held() >= b.len()+2*outChunkSize || (b.len() == 0 && b.held() != 0) {
					rt.Fatalf("%d pending in %d bytes of chunks", b.len(), b.held())
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
		if b.held() != 0 || b.chunks != nil {
			rt.Fatalf("an empty outBuf holds %d bytes of chunks", b.held())
		}
	})
}
