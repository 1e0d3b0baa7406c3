//go:build linux

package reactor

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSendFileTakes: ReadFrom's sendfile(2) path takes a regular file, one
// wrapped (io.Copy(conn, f) reaches ReadFrom through f's WriteTo, which
// wraps f) and a LimitedReader of one, and leaves a pipe, a reader that is no file and
// a LimitedReader of one to io.Copy with nothing sent; a LimitedReader
// with nothing left sends nothing. (TestNetConnReadFrom checks the bytes.)
func TestSendFileTakes(t *testing.T) {
	c := drainedNetConn(t, oneLoopReactor(t, BackendEpoll))
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := func() *os.File {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	pr := fedPipe(t)
	for _, tc := range []struct {
		name    string
		r       io.Reader
		handled bool
		n       int64
	}{
		{"file", file(), true, 10},
		{"limited file", &io.LimitedReader{R: file(), N: 4}, true, 4},
		{"file wrapped, as io.Copy's WriteTo hands it", struct{ *os.File }{file()}, true, 10},
		{"limited, nothing left", &io.LimitedReader{R: file(), N: 0}, true, 0},
		{"pipe", pr, false, 0},
		{"limited pipe", &io.LimitedReader{R: pr, N: 2}, false, 0},
		{"bytes", bytes.NewReader([]byte("abc")), false, 0},
	} {
		n, handled, err := c.fd.sendFile(tc.r)
		if handled != tc.handled || n != tc.n || err != nil {
			t.Errorf("%s: sendFile = %d, handled %v, %v; want %d, handled %v", tc.name, n, handled, err, tc.n, tc.handled)
		}
	}
}

// drainedNetConn is a NetConn dialed on r whose peer reads everything
// sent and discards it; both are closed at cleanup.
func drainedNetConn(t *testing.T, r *Reactor) *NetConn {
	t.Helper()
	ln, err := r.NetListen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := r.DialWith(t.Context(), "tcp", ln.Addr().String(), NetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		s, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, s)
			s.Close()
		}
	}()
	return c
}

// fedPipe returns the read end of a pipe that holds "xyz" and whose
// writer closed; closed at cleanup.
func fedPipe(t *testing.T) *os.File {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	pw.Write([]byte("xyz"))
	pw.Close()
	return pr
}
