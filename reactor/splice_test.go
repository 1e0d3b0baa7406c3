package reactor_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// randomBytes returns n bytes of a stream seeded by seed.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rnd := mrand.New(mrand.NewPCG(seed, 11))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// socketSource is a stream socket ReadFrom may splice from, with the end
// that feeds it.
type socketSource struct {
	name string
	make func(t *testing.T, r *reactor.Reactor) (src io.Reader, feed net.Conn)
}

// stdPair is a connected pair from net: the far end and the near one.
func stdPair(t testing.TB, network string) (far, near net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = t.TempDir() + "/src.sock"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	far, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	near, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { far.Close(); near.Close() })
	return far, near
}

var socketSources = []socketSource{
	{"NetConn", func(t *testing.T, r *reactor.Reactor) (io.Reader, net.Conn) {
		feed, src := tcpPair(t, r)
		return src, feed
	}},
	{"net.TCPConn", func(t *testing.T, _ *reactor.Reactor) (io.Reader, net.Conn) {
		feed, src := stdPair(t, "tcp")
		return src, feed
	}},
	{"net.UnixConn", func(t *testing.T, _ *reactor.Reactor) (io.Reader, net.Conn) {
		feed, src := stdPair(t, "unix")
		return src, feed
	}},
}

// TestNetConnReadFromSocket: ReadFrom of a stream socket (a NetConn, a
// net.TCPConn, a net.UnixConn: a proxy's io.Copy) moves every byte once
// and in order to the source's end of stream, and a LimitedReader of one
// exactly N, leaving the rest in the source; over TCP and Unix on every
// backend. 9 MiB cross the 1 MiB drains and fill the destination, so the
// pump parks; the source's feeder starts late, so the drain parks too.
func TestNetConnReadFromSocket(t *testing.T) {
	const size, part = 9<<20 + 77, 3<<20 + 5
	for _, b := range connBackends {
		for _, network := range []string{"tcp", "unix"} {
			for _, ss := range socketSources {
				t.Run(name(b)+"/"+network+"/"+ss.name, func(t *testing.T) {
					r := newReactor(t, b, 1)
					c, s, err := netPair(r, netListen(t, r, network))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					defer s.Close()
					src, feed := ss.make(t, r)
					data := randomBytes(size, uint64(len(ss.name)))
					fed := make(chan error, 1)
					go func() {
						time.Sleep(20 * time.Millisecond) // the first drain parks
						_, err := feed.Write(data)
						if err == nil {
							err = feed.(interface{ CloseWrite() error }).CloseWrite()
						}
						fed <- err
					}()
					got := make(chan []byte, 1)
					go func() {
						buf := make([]byte, size)
						n, _ := io.ReadFull(s, buf)
						got <- buf[:n]
					}()
					rf := c.(io.ReaderFrom)
					lr := &io.LimitedReader{R: src, N: part}
					if n, err := rf.ReadFrom(lr); n != part || err != nil || lr.N != 0 {
						t.Fatalf("ReadFrom(LimitedReader of a %s) = %d, %v, N left %d; want %d, N 0", ss.name, n, err, lr.N, part)
					}
					if n, err := rf.ReadFrom(src); n != size-part || err != nil {
						t.Fatalf("ReadFrom(%s) = %d, %v; want %d", ss.name, n, err, size-part)
					}
					if err := <-fed; err != nil {
						t.Fatal(err)
					}
					if g := <-got; !bytes.Equal(g, data) {
						t.Fatalf("peer read %d bytes (sha %x), want %d (sha %x)", len(g), sha256.Sum256(g), len(data), sha256.Sum256(data))
					}
				})
			}
		}
	}
}

// TestNetConnReadFromSocketDeadlines: a splice waits for its source under
// the source's read deadline (nothing moved: the source's timeout), and
// pumps under its own write deadline: with a peer that reads nothing it
// returns the timeout with the bytes it wrote, exactly those the peer
// then reads. Bytes the source still had stay readable from it.
func TestNetConnReadFromSocketDeadlines(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			c, s, err := netPair(r, netListen(t, r, "tcp"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			feed, src := tcpPair(t, r)
			rf := c.(io.ReaderFrom)

			src.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n0, err := rf.ReadFrom(src)
			if n0 != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadFrom of a silent source past its read deadline = %d, %v; want 0 and the deadline", n0, err)
			}
			// Shaped as net's: readfrom's OpError around the timeout, not
			// around the source's own OpError.
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "readfrom" || errors.As(oe.Err, new(*net.OpError)) {
				t.Fatalf("ReadFrom's error %q: want a readfrom *net.OpError around the source's timeout itself", err)
			}
			src.SetReadDeadline(time.Time{})

			// 64 MiB fed, the destination's peer reading nothing.
			data := randomBytes(64<<20, 3)
			fed := make(chan int, 1)
			go func() {
				n, _ := feed.Write(data)
				feed.(interface{ CloseWrite() error }).CloseWrite()
				fed <- n
			}()
			c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := rf.ReadFrom(src)
			if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= int64(len(data)) {
				t.Fatalf("ReadFrom to a peer that reads nothing = %d, %v; want some bytes and the deadline", n, err)
			}
			peerReadExactly(t, c, s, data, n)
			// What the source still holds is the stream's tail: the
			// splice took from it only what it moved or lost in its pipe.
			tail, err := io.ReadAll(src)
			if err != nil {
				t.Fatal(err)
			}
			if <-fed != len(data) || !bytes.HasSuffix(data, tail) || int64(len(tail)) > int64(len(data))-n {
				t.Fatalf("the source kept %d bytes, not a tail of what was fed after the %d moved", len(tail), n)
			}
		})
	}
}

// BenchmarkNetConnReadFromSocket: a proxy's copy of 16 MiB from a TCP
// socket into a NetConn, spliced (ReadFrom) and through io.Copy's buffer;
// cpu-µs/MiB is the copying thread's CPU.
func BenchmarkNetConnReadFromSocket(b *testing.B) {
	const size = 16 << 20
	for _, how := range []string{"splice", "copy"} {
		b.Run(how, func(b *testing.B) {
			c := drainedPair(b)
			feed, src := stdPair(b, "tcp")
			chunk := make([]byte, 1<<20)
			threadCPUPerMiB(b, size>>20, func() error {
				go func() {
					for range size / len(chunk) {
						feed.Write(chunk)
					}
				}()
				lr := &io.LimitedReader{R: src, N: size}
				var err error
				if how == "splice" {
					_, err = c.(io.ReaderFrom).ReadFrom(lr)
				} else {
					_, err = io.Copy(struct{ io.Writer }{c}, lr)
				}
				if err == nil && lr.N != 0 {
					err = fmt.Errorf("%d bytes not moved", lr.N)
				}
				return err
			})
		})
	}
}

// TestNetConnReadFromSocketCloseAndDeadline: while a splice waits for its
// source, it holds nothing of the destination, as net's: the
// destination's Close returns at once (net/http's Server.Close waits for
// it) and the ReadFrom fails with net.ErrClosed when the source's bytes
// come. A write deadline that passes while a slow source trickles into a
// destination with room ends the ReadFrom at its next pump.
func TestNetConnReadFromSocketCloseAndDeadline(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			dst, _ := tcpPair(t, r)    // nothing parks on the peer: Outstanding is the source's
			feed, src := tcpPair(t, r) // a NetConn source: its wait is a request
			rf := make(chan error, 1)
			go func() {
				_, err := dst.(io.ReaderFrom).ReadFrom(src)
				rf <- err
			}()
			waitFor(t, 10*time.Second, "ReadFrom parked on its source", func() bool { return r.Stats().Outstanding == 1 })
			closed := make(chan struct{})
			go func() { dst.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("the destination's Close still waits, 10s on, for a ReadFrom parked on a silent source")
			}
			feed.Write([]byte("late"))
			if err := <-rf; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadFrom whose destination closed: %v, want net.ErrClosed", err)
			}

			dst2, peer2 := tcpPair(t, r)
			go io.Copy(io.Discard, peer2)
			feed2, src2 := tcpPair(t, r)
			stop := make(chan struct{})
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						feed2.(interface{ CloseWrite() error }).CloseWrite()
						return
					case <-tick.C:
						feed2.Write([]byte{'x'})
					}
				}
			}()
			dst2.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			go func() {
				_, err := dst2.(io.ReaderFrom).ReadFrom(src2)
				rf <- err
			}()
			select {
			case err := <-rf:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("ReadFrom of a trickle past the write deadline: %v, want the deadline", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("ReadFrom of a trickle still runs 10s past its write deadline")
			}
			close(stop)
			<-trickled
		})
	}
}

// peekedConn is the usual "sniff the first bytes, then hand the conn on"
// wrapper: its Read goes through a bufio.Reader that holds bytes already,
// and it has SyscallConn, from the NetConn it embeds.
type peekedConn struct {
	*reactor.NetConn
	br *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.br.Read(b) }

// TestNetConnReadFromWrapperReads: ReadFrom of a type that embeds a conn
// reads through the type's own Read, never past it on the socket: the
// bytes its bufio.Reader peeked arrive, then the rest. io.Copy would go
// past it too through a WriteTo the wrapper inherited from NetConn, so
// this also fails if NetConn gets one (see splice.go).
func TestNetConnReadFromWrapperReads(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			dst, peer := tcpPair(t, r)
			feed, src := tcpPair(t, r)
			feed.Write([]byte("HEADER|"))
			br := bufio.NewReader(src)
			if _, err := br.Peek(7); err != nil {
				t.Fatal(err)
			}
			feed.Write([]byte("body"))
			feed.(interface{ CloseWrite() error }).CloseWrite()
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			if n, err := io.Copy(dst, &peekedConn{src.(*reactor.NetConn), br}); n != 11 || err != nil {
				t.Fatalf("io.Copy(NetConn, wrapper) = %d, %v; want 11", n, err)
			}
			dst.Close()
			if g := <-got; string(g) != "HEADER|body" {
				t.Fatalf("peer read %q, want %q", g, "HEADER|body")
			}
		})
	}
}
