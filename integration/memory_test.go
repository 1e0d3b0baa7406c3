package integration_test

import (
	"net"
	"sync"
	"testing"
	"time"
)

// TestMemoryAfterNeverReadingPeers is a hostile-client finding: 200 peers
// that send and never read held 219 MB of pending echo in 335-392 MB of
// heap, and after they left RSS stayed at 337 MB for 108 s, because an idle
// daemon allocates too little for a garbage collection to notice the freed
// buffers. Here 64 such peers against --max-pending 1MiB: the memory holding
// their pending echo (echod_output_buffer_bytes) must be what is pending
// plus at most two 16 KiB chunks each, the heap they cost within 1.25x of
// what is pending plus a constant, and once they go, RSS must come back to
// within a quarter of what the burst added, in 10 s.
func TestMemoryAfterNeverReadingPeers(t *testing.T) {
	const (
		peers = 64
		slack = 32 << 20 // the runtime's own growth, the connections' structures
	)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
				"--max-pending", "1MiB", "--idle-timeout", "0")
			m0 := d.metrics()
			var conns []net.Conn
			var wg sync.WaitGroup
			chunk := randomBytes(3, 256<<10)
			for range peers {
				c := dial(t, d.addr())
				conns = append(conns, c)
				wg.Go(func() {
					for {
						if _, err := c.Write(chunk); err != nil {
							return // closed below
						}
					}
				})
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
				wg.Wait()
			}()
			waitUntil(t, "every peer paused by backpressure", func() bool {
				return d.stream(d.metrics(), "echod_connections_paused") == peers
			})
			m1 := d.metrics()
			heap := m1["go_memstats_heap_inuse_bytes"] - m0["go_memstats_heap_inuse_bytes"]
			held := d.stream(m1, "echod_received_bytes_total") - d.stream(m1, "echod_sent_bytes_total")
			bufs := d.stream(m1, "echod_output_buffer_bytes")
			rssBurst := m1["process_resident_memory_bytes"] - m0["process_resident_memory_bytes"]
			t.Logf("%d never-reading peers: echod holds %.0f bytes of echo (%.0f per peer) in %.0f of buffers; heap +%.0f (%.0f per peer), RSS +%.0f",
				peers, held, held/peers, bufs, heap, heap/peers, rssBurst)
			if bufs > held+peers*(32<<10) {
				t.Errorf("%.0f bytes of output buffers hold %.0f bytes of echo: over two 16 KiB chunks a peer", bufs, held)
			}
			if heap > held*5/4+slack {
				t.Errorf("heap grew by %.0f bytes for %.0f bytes of pending echo: over 1.25x + %d", heap, held, slack)
			}

			for _, c := range conns {
				c.Close()
			}
			wg.Wait()
			start := time.Now()
			waitUntil(t, "the peers' connections closed", func() bool {
				return d.stream(d.metrics(), "echod_connections_active") == 0
			})
			waitUntil(t, "echod to hand the burst's memory back (echod_memory_releases_total)", func() bool {
				return d.metrics()["echod_memory_releases_total"] > m1["echod_memory_releases_total"]
			})
			if raceEnabled {
				// The race detector's shadow memory grows with the heap and
				// is not handed back: RSS cannot be checked here.
				d.stop()
				return
			}
			target := m0["process_resident_memory_bytes"] + rssBurst/4
			deadline := start.Add(10 * time.Second)
			for {
				rss := d.metrics()["process_resident_memory_bytes"]
				if rss <= target {
					t.Logf("RSS back to %.0f (burst +%.0f) %v after the peers left", rss, rssBurst, time.Since(start).Round(100*time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("RSS still %.0f 10 s after the peers left: want at most %.0f (before %.0f, burst +%.0f)",
						rss, target, m0["process_resident_memory_bytes"], rssBurst)
				}
				time.Sleep(100 * time.Millisecond)
			}
			d.stop()
		})
	}
}
