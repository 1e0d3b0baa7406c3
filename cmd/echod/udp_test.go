package main

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestScreen: which sources udpEcho refuses to answer, and why.
func TestScreen(t *testing.T) {
	own := new(atomic.Pointer[ownAddrs])
	o := newOwnAddrs([]netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")})
	o = o.with(netip.MustParseAddrPort("127.0.0.1:7007"))
	o = o.with(netip.MustParseAddrPort("0.0.0.0:7008"))
	o = o.with(netip.MustParseAddrPort("[::]:7009"))
	own.Store(o)
	u := &udpEcho{log: zap.NewNop(), own: own}
	tests := []struct {
		from   string
		reason dropReason
		drop   bool
	}{
		{"127.0.0.1:40000", 0, false},
		{"127.0.0.1:7007", dropOwnAddress, true},
		{"[::ffff:127.0.0.1]:7007", dropOwnAddress, true},
		{"127.0.0.2:7007", 0, false}, // another address than the one bound: no socket of ours there
		{"127.0.0.5:7008", dropOwnAddress, true},
		{"192.0.2.10:7008", dropOwnAddress, true},
		{"192.0.2.11:7008", 0, false}, // another host's port 7008
		{"[2001:db8::10]:7009", dropOwnAddress, true},
		{"[::1]:7009", dropOwnAddress, true},
		{"[2001:db8::11]:7009", 0, false},
		{"198.51.100.1:0", dropPortZero, true},
		{"198.51.100.1:7", dropServicePort, true},
		{"198.51.100.1:19", dropServicePort, true},
		{"198.51.100.1:1023", dropServicePort, true},
		{"198.51.100.1:1024", 0, false},
		{"0.0.0.0:5000", dropBadAddress, true},
		{"[::]:5000", dropBadAddress, true},
		{"224.0.0.1:5000", dropBadAddress, true},
		{"[ff02::1]:5000", dropBadAddress, true},
		{"255.255.255.255:5000", dropBadAddress, true},
	}
	for _, tt := range tests {
		reason, drop := u.screen(netip.MustParseAddrPort(tt.from))
		if drop != tt.drop || (drop && reason != tt.reason) {
			t.Errorf("screen(%s) = %v, %v; want %v, %v", tt.from, reason, drop, tt.reason, tt.drop)
		}
	}
	if _, drop := u.screen(netip.AddrPort{}); !drop {
		t.Error("screen(zero AddrPort) echoes it; want it dropped")
	}
}

func TestWildcardHost(t *testing.T) {
	for in, want := range map[string]bool{
		"0.0.0.0:7": true, "[::]:7": true, ":7": true, "[::ffff:0.0.0.0]:7": true,
		"127.0.0.1:7": false, "[::1]:7": false, "localhost:7": false, "nonsense": false,
	} {
		if got := wildcardHost(in); got != want {
			t.Errorf("wildcardHost(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestRateTable: a source gets a burst of rate replies, then one per
// 1/rate; other hosts keep their own budget; an IPv6 /64 is one host.
func TestRateTable(t *testing.T) {
	const rate = 10
	t0 := time.Unix(1_000_000, 0)
	r := newRateTable(rate, t0)
	a := netip.MustParseAddr("198.51.100.1")
	for i := range rate {
		if !r.allow(a, t0) {
			t.Fatalf("reply %d of the burst of %d refused", i+1, rate)
		}
	}
	if r.allow(a, t0) {
		t.Fatalf("reply %d allowed at once; the burst is %d", rate+1, rate)
	}
	// Another host, in another bucket, is not affected.
	b := otherBucket(t, r, a, "198.51.100.")
	if !r.allow(b, t0) {
		t.Errorf("%v refused after %v spent its burst", b, a)
	}
	step := time.Second / rate
	if r.allow(a, t0.Add(step-time.Nanosecond)) {
		t.Error("a reply allowed before 1/rate passed")
	}
	if !r.allow(a, t0.Add(step)) {
		t.Error("no reply allowed once 1/rate passed")
	}
	if r.allow(a, t0.Add(step)) {
		t.Error("two replies allowed for one 1/rate")
	}
	// After a long silence, the burst is back, and no more than it.
	later := t0.Add(time.Hour)
	n := 0
	for r.allow(a, later) {
		n++
	}
	if n != rate {
		t.Errorf("%d replies after an hour's silence, want the burst of %d", n, rate)
	}

	// Two addresses of one /64 share a budget.
	v6 := newRateTable(1, t0)
	if !v6.allow(netip.MustParseAddr("2001:db8:1:2::1"), t0) {
		t.Fatal("first IPv6 reply refused")
	}
	if v6.allow(netip.MustParseAddr("2001:db8:1:2:ffff::99"), t0) {
		t.Error("another address of the same /64 got its own burst")
	}
}

// otherBucket returns an address prefix+N whose bucket in r differs from
// a's (the seed is random: search for one).
func otherBucket(t *testing.T, r *rateTable, a netip.Addr, prefix string) netip.Addr {
	t.Helper()
	for i := 2; i < 255; i++ {
		b := netip.MustParseAddr(prefix + strconv.Itoa(i))
		if r.bucket(b) != r.bucket(a) {
			return b
		}
	}
	t.Fatal("every address in the same bucket")
	return netip.Addr{}
}

// TestRateTableMemory: the table's size is fixed, whatever the sources.
func TestRateTableMemory(t *testing.T) {
	r := newRateTable(1, time.Now())
	now := time.Now()
	allowed := 0
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if r.allow(a, now) {
			allowed++
		}
	}
	// At rate 1 with a burst of 1, each bucket allows one reply: spoofed
	// sources cannot buy more than the table holds.
	if allowed > rateBuckets {
		t.Errorf("%d replies allowed to 100,000 sources at once; the table has %d buckets", allowed, rateBuckets)
	}
}
