package reactor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// tempFile writes size random bytes to a file in t's temporary folder and
// returns it open for reading, with its bytes.
func tempFile(t *testing.T, size int) (*os.File, []byte) {
	t.Helper()
	data := randomBytes(size, uint64(size))
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, data
}

// TestNetConnReadFrom: ReadFrom sends a whole file, a LimitedReader's
// part of one (N and the file's offset moved by what was sent), a reader
// that is no file, and a file through io.Copy, each byte once and in
// order, and wraps a failing reader's error as net's does; over TCP and
// Unix sockets on both backends. 9 MiB cross sendfile's 4 MiB chunks and
// fill the socket, so the sender parks.
func TestNetConnReadFrom(t *testing.T) {
	const size = 9<<20 + 123
	for _, b := range backends {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(name(b)+"/"+network, func(t *testing.T) {
				r := newReactor(t, b, 1)
				c, s, err := netPair(r, netListen(t, r, network))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				defer s.Close()
				f, data := tempFile(t, size)
				const skip, part = 1000, 5 << 20
				var want []byte
				want = append(want, data...)
				want = append(want, data[skip:skip+part]...)
				want = append(want, "not a file"...)
				want = append(want, data...)
				got := make(chan []byte, 1)
				go func() {
					buf := make([]byte, len(want))
					n, _ := io.ReadFull(s, buf)
					got <- buf[:n]
				}()
				rf := c.(io.ReaderFrom)
				if n, err := rf.ReadFrom(f); n != size || err != nil {
					t.Fatalf("ReadFrom(file) = %d, %v; want %d", n, err, size)
				}
				if _, err := f.Seek(skip, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				lr := &io.LimitedReader{R: f, N: part}
				if n, err := rf.ReadFrom(lr); n != part || err != nil || lr.N != 0 {
					t.Fatalf("ReadFrom(LimitedReader) = %d, %v, N left %d; want %d, N 0", n, err, lr.N, part)
				}
				if off, _ := f.Seek(0, io.SeekCurrent); off != skip+part {
					t.Fatalf("file offset %d after the LimitedReader, want %d", off, skip+part)
				}
				if n, err := rf.ReadFrom(bytes.NewReader([]byte("not a file"))); n != 10 || err != nil {
					t.Fatalf("ReadFrom(bytes.Reader) = %d, %v", n, err)
				}
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				if n, err := io.Copy(c, f); n != size || err != nil { // through f's WriteTo
					t.Fatalf("io.Copy(conn, file) = %d, %v; want %d", n, err, size)
				}
				boom := errors.New("boom")
				var oe *net.OpError
				if _, err := rf.ReadFrom(io.MultiReader(bytes.NewReader(nil), errReader{boom})); !errors.As(err, &oe) || oe.Op != "readfrom" || !errors.Is(err, boom) {
					t.Fatalf("ReadFrom of a failing reader: %v; want a readfrom *net.OpError wrapping it, as net's", err)
				}
				if g := <-got; !bytes.Equal(g, want) {
					t.Fatalf("peer read %d bytes (sha %x), want %d (sha %x)", len(g), sha256.Sum256(g), len(want), sha256.Sum256(want))
				}
			})
		}
	}
}

// TestNetConnReadFromDeadline: a peer that reads nothing holds a file
// send at the write deadline: ReadFrom returns the timeout with the bytes
// it sent, which are exactly those the peer then reads; after Close it
// fails with net.ErrClosed.
func TestNetConnReadFromDeadline(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			c, s, err := netPair(r, netListen(t, r, "tcp"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			f, data := tempFile(t, 64<<20)
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.(io.ReaderFrom).ReadFrom(f)
			if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= int64(len(data)) {
				t.Fatalf("ReadFrom to a peer that reads nothing = %d, %v; want some bytes and the deadline", n, err)
			}
			peerReadExactly(t, c, s, data, n)
			if _, err := c.(io.ReaderFrom).ReadFrom(f); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadFrom after Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

var _ io.ReaderFrom = (*reactor.NetConn)(nil)

// TestHTTPServeFileOnReactor: net/http serves a file on NetListen, whole
// and by range, where its response hands the body to NetConn.ReadFrom
// (sendfile), and a std client gets every byte.
func TestHTTPServeFileOnReactor(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			f, data := tempFile(t, 3<<20+17)
			ln, err := r.NetListen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				http.ServeContent(w, req, "body", time.Time{}, f)
			})}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			url := "http://" + ln.Addr().String() + "/"
			for _, tc := range []struct {
				rng  string
				want []byte
			}{
				{"", data},
				{"bytes=1000-2000999", data[1000:2001000]},
			} {
				req, _ := http.NewRequest("GET", url, nil)
				if tc.rng != "" {
					req.Header.Set("Range", tc.rng)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Fatalf("GET %q: %d bytes, %v; want %d bytes, equal", tc.rng, len(got), err, len(tc.want))
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkNetConnReadFrom sends a 16 MiB file over loopback TCP to a peer
// that discards it: through ReadFrom (sendfile) and through io.Copy's
// buffer (Write), for the ratio, with the CPU per MiB of the sending
// goroutine's thread (locked to it; the peer and the loop run elsewhere).
func BenchmarkNetConnReadFrom(b *testing.B) {
	for _, how := range []string{"sendfile", "copy"} {
		b.Run(how, func(b *testing.B) {
			c := drainedPair(b)
			path := filepath.Join(b.TempDir(), "body")
			if err := os.WriteFile(path, make([]byte, 16<<20), 0o600); err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			threadCPUPerMiB(b, 16, func() error {
				f.Seek(0, io.SeekStart)
				if how == "sendfile" {
					_, err := c.(io.ReaderFrom).ReadFrom(f)
					return err
				}
				_, err := io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{f})
				return err
			})
		})
	}
}

// peerReadExactly closes c, whose ReadFrom of data stopped at its write
// deadline having sent n bytes, and checks that its peer s then reads
// exactly those: data's first n bytes, nothing more.
func peerReadExactly(t *testing.T, c, s net.Conn, data []byte, n int64) {
	t.Helper()
	c.Close()
	rest, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(rest)) != n || !bytes.Equal(rest, data[:n]) {
		t.Fatalf("ReadFrom said %d bytes; the peer read %d (equal to the source's first bytes: %v)", n, len(rest), bytes.Equal(rest, data[:min(int64(len(rest)), n)]))
	}
}

// drainedPair is a NetConn dialed on a fresh epoll reactor whose peer
// reads and discards everything; closed at cleanup.
func drainedPair(b *testing.B) net.Conn {
	r := newReactor(b, backend{kind: reactor.BackendEpoll}, 1)
	c, s, err := netPair(r, netListen(b, r, "tcp"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	go io.Copy(io.Discard, s)
	return c
}

// threadCPUPerMiB runs send, which moves mib MiB, for b's loop on a
// thread locked to the benchmark goroutine (the peer and the loop run
// elsewhere), and reports that thread's CPU per MiB.
func threadCPUPerMiB(b *testing.B, mib int, send func() error) {
	b.SetBytes(int64(mib) << 20)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
	b.ResetTimer()
	for b.Loop() {
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*mib), "cpu-µs/MiB")
}

// errReader fails every Read with its error.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
