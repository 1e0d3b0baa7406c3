//go:build linux

package reactor

import (
	"testing"
	"time"
)

// BenchmarkSweepWalk: what one walk of the idle-timeout sweep costs per
// Conn it finds not yet due (the common walk: it closes a few and looks at
// all), with 10,000 Conns on the loop. The sweep replaced a heap entry per
// Conn; a walk happens at most once per 1/64 of the shortest timeout.
func BenchmarkSweepWalk(b *testing.B) {
	const n = 10000
	l := &loop{}
	ln := &Listener{idle: 5 * time.Minute, readTimeout: time.Minute}
	now := nanotime()
	for range n {
		c := &Conn{l: l, ln: ln}
		c.lastActive.Store(now)
		c.lastRead = now
		if err := l.addConn(c); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		l.sweep(now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/conn")
	if want := now + int64(time.Minute); l.sweepAt != want {
		b.Fatalf("sweep due at %d, want the earliest read deadline %d", l.sweepAt, want)
	}
}
