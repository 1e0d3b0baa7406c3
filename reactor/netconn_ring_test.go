package reactor_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNetConnReadRacesDeadlines: a reader whose deadlines keep expiring
// while a writer streams 2 MiB in uneven pieces, with pauses, loses and
// repeats nothing: a Read either returns bytes or times out, and the bytes
// read are the bytes written, in order. Through the ring a timeout cancels
// a receive the kernel may be completing at that moment; its bytes must
// come back to the Read (or stay in the socket), never vanish with the
// cancel. Every row of the connection layer runs it; the io_uring row's
// reads go through the ring (checked by the receive count).
func TestNetConnReadRacesDeadlines(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			c, peer := tcpPair(t, r)
			src := make([]byte, 2<<20)
			rng := rand.New(rand.NewPCG(7, uint64(len(name(b)))))
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			wrote := make(chan error, 1)
			go func() {
				wr := rand.New(rand.NewPCG(8, 9))
				for off := 0; off < len(src); {
					n := min(len(src)-off, 1+wr.IntN(6000))
					if _, err := peer.Write(src[off : off+n]); err != nil {
						wrote <- err
						return
					}
					off += n
					if wr.IntN(8) == 0 {
						time.Sleep(time.Duration(wr.IntN(300)) * time.Microsecond) // a gap the reader's deadlines fall into
					}
				}
				wrote <- nil
			}()
			h := sha256.New()
			got, timeouts := 0, 0
			buf := make([]byte, 8192)
			give := time.Now().Add(20 * time.Second)
			for got < len(src) && time.Now().Before(give) {
				c.SetReadDeadline(time.Now().Add(time.Duration(rng.IntN(200)) * time.Microsecond))
				n, err := c.Read(buf[:1+rng.IntN(len(buf))])
				h.Write(buf[:n])
				got += n
				switch {
				case err == nil:
				case errors.Is(err, os.ErrDeadlineExceeded):
					if n != 0 {
						t.Fatalf("a timed-out Read returned %d bytes", n)
					}
					timeouts++
				default:
					t.Fatalf("Read after %d bytes: %v", got, err)
				}
			}
			if got < len(src) {
				c.Close() // ends a writer stuck on a full socket
				t.Fatalf("read %d bytes of %d within 20s", got, len(src))
			}
			if err := <-wrote; err != nil {
				t.Fatalf("writer: %v", err)
			}
			want := sha256.Sum256(src)
			if got != len(src) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("read %d bytes of %d, equal: %v", got, len(src), bytes.Equal(h.Sum(nil), want[:]))
			}
			if timeouts == 0 {
				t.Fatalf("no Read timed out: the race this test is for did not happen")
			}
			if ring := r.Stats().Received > 0; ring != strings.HasPrefix(r.IOPath(), "ring") {
				t.Fatalf("reads through the ring: %v (Stats.Received %d) on %s", ring, r.Stats().Received, name(b))
			}
			t.Logf("%d timeouts, %d receives through the ring", timeouts, r.Stats().Received)
		})
	}
}

// TestNetConnRingReadTakesNoMore: a Read parked on a receive through the
// ring with a 3-byte buffer, woken by a 10-byte write, gets 3 bytes and
// leaves 7 in the socket for the next Read: the kernel is told the
// reader's size, so no byte is taken that the reader cannot hold. At EOF
// the parked Read returns io.EOF.
func TestNetConnRingReadTakesNoMore(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			c, peer := tcpPair(t, r)
			// The first Read finds the socket empty; the next ones park
			// (through the ring where there is one) before the write.
			for round := range 3 {
				got := make(chan []byte, 1)
				go func() {
					p := make([]byte, 3)
					n, err := c.Read(p)
					if err != nil {
						t.Errorf("round %d: Read: %v", round, err)
					}
					got <- p[:n]
				}()
				waitFor(t, 10*time.Second, "Read parked", func() bool { return r.Stats().Outstanding == 1 })
				if _, err := peer.Write([]byte("0123456789")); err != nil {
					t.Fatal(err)
				}
				if p := <-got; string(p) != "012" {
					t.Fatalf("round %d: parked Read of 3 got %q", round, p)
				}
				rest := make([]byte, 7)
				if _, err := io.ReadFull(c, rest); err != nil || string(rest) != "3456789" {
					t.Fatalf("round %d: the rest: %q, %v", round, rest, err)
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 8))
				done <- err
			}()
			waitFor(t, 10*time.Second, "Read parked", func() bool { return r.Stats().Outstanding == 1 })
			peer.(interface{ CloseWrite() error }).CloseWrite()
			if err := <-done; err != io.EOF {
				t.Fatalf("parked Read at EOF: %v, want io.EOF", err)
			}
			if ring := r.Stats().Received > 0; ring != strings.HasPrefix(r.IOPath(), "ring") {
				t.Fatalf("reads through the ring: %v (Stats.Received %d) on %s", ring, r.Stats().Received, name(b))
			}
		})
	}
}
