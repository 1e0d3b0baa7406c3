package reactor_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// countEcho echoes and counts the bytes it was handed.
type countEcho struct{ in *atomic.Int64 }

func (h countEcho) OnOpen(*reactor.Conn) {}
func (h countEcho) OnData(c *reactor.Conn, b []byte) {
	h.in.Add(int64(len(b)))
	c.Write(b)
}
func (h countEcho) OnClose(*reactor.Conn, error) {}

// markEcho echoes, and for each call reports what flood had counted then.
type markEcho struct {
	flood *atomic.Int64
	marks chan int64
}

func (h markEcho) OnOpen(*reactor.Conn) {}
func (h markEcho) OnData(c *reactor.Conn, b []byte) {
	select {
	case h.marks <- h.flood.Load():
	default:
	}
	c.Write(b)
}
func (h markEcho) OnClose(*reactor.Conn, error) {}

// TestFloodDoesNotStarveOthers: on one loop, four peers send without
// pause and read their echo back, which keeps the loop busy every turn,
// while a fifth sends one byte at a time and waits for it. A loop that
// served a Conn until its socket ran dry, or put a Conn's next receive
// behind every other's, would let the flooders' bytes pass the ping
// without bound. The measure is the flooders' bytes the loop handed over
// between the ping's Write and the ping's OnData, counted on the server,
// so the client's scheduling does not enter it: one turn takes at most a
// few of each flooder's receives (epoll: 4 reads of the loop's buffer;
// io_uring: the buffers the flooders hold, 256 of 16 KiB). Single pings
// vary with how late the kernel delivers the byte (fair loops: up to
// 10 MiB on a loaded machine), so the mean is what is bounded: fair loops
// stay near 1 MiB, one that drains a socket took 12-36 MiB.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	// Two buffers for five receives: every turn some run out, are armed
	// again, and the ping's may run out twice and read after a poll.
	starved := backend{kind: reactor.BackendUring, bufs: 2}
	for _, b := range append(connBackends[:len(connBackends):len(connBackends)], starved) {
		t.Run(name(b), func(t *testing.T) {
			if b.bufs != 0 {
				if ok, why := kernelRecvs(t); !ok {
					t.Skipf("kernel without a receive path: %s", why)
				}
			}
			r := newReactor(t, b, 1)
			var flood atomic.Int64
			fl := listen(t, r, countEcho{in: &flood}, reactor.ListenConfig{})
			h := markEcho{flood: &flood, marks: make(chan int64, 1)}
			pl := listen(t, r, h, reactor.ListenConfig{})

			// Closing the flooders ends their writes and reads, whatever
			// the loop does with them.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var flooders []net.Conn
			defer func() {
				close(stop)
				for _, c := range flooders {
					c.Close()
				}
				wg.Wait()
			}()
			chunk := make([]byte, 64<<10)
			for range 4 {
				c := dial(t, fl)
				flooders = append(flooders, c)
				wg.Add(2)
				go func() {
					defer wg.Done()
					for {
						if _, err := c.Write(chunk); err != nil {
							select {
							case <-stop:
							default:
								t.Errorf("flooder write: %v", err)
							}
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					io.Copy(io.Discard, c)
				}()
			}
			waitFor(t, 10*time.Second, "the flooders under way", func() bool { return flood.Load() > 8<<20 })

			p := dial(t, pl)
			const pings = 100
			var worst, total int64
			buf := make([]byte, 1)
			for i := range pings {
				p.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := p.Write([]byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
				// Read after Write returned: a late count only shrinks d.
				sent := flood.Load()
				if _, err := io.ReadFull(p, buf); err != nil {
					t.Fatalf("ping %d not answered (%v) while the flooders were handed %d bytes: the quiet Conn starved", i, err, flood.Load()-sent)
				}
				if buf[0] != byte(i) {
					t.Fatalf("ping %d came back as %d", i, buf[0])
				}
				d := max(<-h.marks-sent, 0)
				worst = max(worst, d)
				total += d
			}
			const bound = 4 << 20
			if mean := total / pings; mean > bound {
				t.Fatalf("the flooders were handed a mean of %d bytes between a ping's Write and its OnData (worst %d, %d pings); a fair loop stays under %d", mean, worst, pings, bound)
			}
			if b.bufs != 0 {
				if st := r.Stats(); st.RecvNoBuffers == 0 {
					t.Fatal("no receive ran out of buffers: the row tested nothing of its own")
				}
			}
			t.Logf("flooders handed at most %d bytes (mean %d) between a ping's Write and its OnData; %d in all", worst, total/pings, flood.Load())
		})
	}
}
