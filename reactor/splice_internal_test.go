//go:build linux

package reactor

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSpliceTakes: ReadFrom's splice(2) path takes a stream socket (ours,
// net's TCP and Unix conns, an *os.File of one, a LimitedReader of one)
// to its end of stream or N, and leaves a datagram socket, a pipe and a
// reader that is no file to io.Copy with nothing moved; a LimitedReader
// with nothing left moves nothing. (TestNetConnReadFromSocket checks the
// bytes.) NetConn.ReadFrom takes the path.
func TestSpliceTakes(t *testing.T) {
	r := oneLoopReactor(t, BackendEpoll)
	c := drainedNetConn(t, r)
	// fed returns the near end of a pair whose far end sent "hello" and
	// closed, accepted by listen on network (net's, or NetListen: ours).
	fed := func(listen func(network, address string) (net.Listener, error), network string) net.Conn {
		addr := "127.0.0.1:0"
		if network == "unix" {
			addr = t.TempDir() + "/s.sock"
		}
		l, err := listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		far, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		far.Write([]byte("hello"))
		far.Close()
		near, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { near.Close() })
		return near
	}
	std := func(network string) net.Conn { return fed(net.Listen, network) }
	asFile := func(c net.Conn) *os.File {
		f, err := c.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	pr := fedPipe(t)
	for _, tc := range []struct {
		name    string
		r       io.Reader
		handled bool
		n       int64
	}{
		{"NetConn", fed(r.NetListen, "tcp"), true, 5},
		{"net.TCPConn", std("tcp"), true, 5},
		{"net.UnixConn", std("unix"), true, 5},
		{"file of a TCP socket", asFile(std("tcp")), true, 5},
		{"limited TCPConn", &io.LimitedReader{R: std("tcp"), N: 3}, true, 3},
		{"limited, nothing left", &io.LimitedReader{R: std("tcp"), N: 0}, true, 0},
		{"UDP socket", udp.(io.Reader), false, 0},
		{"pipe", pr, false, 0},
		{"bytes", bytes.NewReader([]byte("abc")), false, 0},
	} {
		n, handled, err := c.fd.spliceFrom(tc.r)
		if handled != tc.handled || n != tc.n || err != nil {
			t.Errorf("%s: spliceFrom = %d, handled %v, %v; want %d, handled %v", tc.name, n, handled, err, tc.n, tc.handled)
		}
	}
	// ReadFrom takes the path: its pipe, emptied, is kept for the next.
	// So does io.Copy from a net.TCPConn, which reaches ReadFrom through
	// the TCPConn's WriteTo with a wrapper of it (spliceable).
	for _, tc := range []struct {
		name string
		copy func(src net.Conn) (int64, error)
	}{
		{"ReadFrom(net.TCPConn)", func(src net.Conn) (int64, error) { return c.ReadFrom(src) }},
		{"io.Copy(NetConn, net.TCPConn)", func(src net.Conn) (int64, error) { return io.Copy(c, src) }},
	} {
		r.pipes.close()
		r.pipes = pipePool{}
		if n, err := tc.copy(std("tcp")); n != 5 || err != nil || len(r.pipes.free) != 1 {
			t.Errorf("%s = %d, %v, with %d pipes kept; want 5 through a pipe", tc.name, n, err, len(r.pipes.free))
		}
	}
}

// TestPipePool: a ReadFrom's pipe, emptied, serves the next one; a pipe
// still holding bytes is closed rather than kept; the reactor's Close
// closes those kept, and one given back after it is closed at once.
func TestPipePool(t *testing.T) {
	r := oneLoopReactor(t, BackendEpoll)
	// A pipe is open while its read end's number still names its inode:
	// a closed number may be reused at once by another file.
	inodes := map[*splicePipe]uint64{}
	get := func() *splicePipe {
		p, err := r.pipes.get()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := inodes[p]; !ok {
			var st unix.Stat_t
			if err := unix.Fstat(p.r, &st); err != nil {
				t.Fatal(err)
			}
			inodes[p] = st.Ino
		}
		return p
	}
	open := func(p *splicePipe) bool {
		var st unix.Stat_t
		return unix.Fstat(p.r, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO && st.Ino == inodes[p]
	}
	p1 := get()
	r.pipes.put(p1)
	if p2 := get(); p2 != p1 {
		t.Fatal("an empty pipe given back did not serve the next get")
	}
	p1.n = 1 // bytes left in it
	r.pipes.put(p1)
	if open(p1) || len(r.pipes.free) != 0 {
		t.Fatalf("a pipe holding bytes: open %v, kept %d; want closed, not kept", open(p1), len(r.pipes.free))
	}
	p3, p4 := get(), get()
	r.pipes.put(p3)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if open(p3) {
		t.Fatal("a kept pipe is open after the reactor's Close")
	}
	r.pipes.put(p4)
	if open(p4) {
		t.Fatal("a pipe given back after the reactor's Close is open")
	}
}
