//go:build linux

package reactor

import (
	"net"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSplitFamilies: a dual-stack dial races the first address's family
// against the other's, each in the resolver's order.
func TestSplitFamilies(t *testing.T) {
	a := func(s string) dialAddr {
		ip := net.ParseIP(s)
		if ip.To4() != nil {
			return dialAddr{raddr: &net.TCPAddr{IP: ip}, family: unix.AF_INET}
		}
		return dialAddr{raddr: &net.TCPAddr{IP: ip}, family: unix.AF_INET6}
	}
	names := func(as []dialAddr) []string {
		var out []string
		for _, x := range as {
			out = append(out, x.raddr.IP.String())
		}
		return out
	}
	for _, tc := range []struct {
		in                  []string
		primaries, fallback []string
	}{
		{[]string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"}, []string{"2001:db8::1", "2001:db8::2"}, []string{"192.0.2.1", "192.0.2.2"}},
		{[]string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.2.1"}, []string{"2001:db8::1"}},
		{[]string{"192.0.2.1", "192.0.2.2"}, []string{"192.0.2.1", "192.0.2.2"}, nil},
	} {
		var in []dialAddr
		for _, s := range tc.in {
			in = append(in, a(s))
		}
		p, f := splitFamilies(in)
		if !slices.Equal(names(p), tc.primaries) || !slices.Equal(names(f), tc.fallback) {
			t.Errorf("splitFamilies(%v) = %v, %v; want %v, %v", tc.in, names(p), names(f), tc.primaries, tc.fallback)
		}
	}
}
