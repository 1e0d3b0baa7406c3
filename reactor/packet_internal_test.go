//go:build linux

package reactor

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

type packetFunc func(p *PacketConn, b []byte, from netip.AddrPort)

func (f packetFunc) OnPacket(p *PacketConn, b []byte, from netip.AddrPort) { f(p, b, from) }

// TestPacketCloseInHandlerEndsDelivery: no OnPacket follows a Close made
// in OnPacket, as no OnData follows a Conn's, though more datagrams wait
// in the socket for the same batch. The handler holds the loop until one
// has arrived, then closes; the test's own Close returns once the loop
// has finished the PacketConn, after whatever that batch delivered.
func TestPacketCloseInHandlerEndsDelivery(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"epoll", Config{Backend: BackendEpoll}},
		{"uring", Config{Backend: BackendUring}},
		{"uring-kernelwait", Config{Backend: BackendUring, KernelWait: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Loops = 1
			r := reactorWith(t, cfg)
			entered, release := make(chan struct{}), make(chan struct{})
			var calls, after atomic.Int32
			var closed atomic.Bool
			pc, err := r.ListenPacket("udp4", "127.0.0.1:0", packetFunc(func(p *PacketConn, _ []byte, _ netip.AddrPort) {
				if closed.Load() {
					after.Add(1)
					return
				}
				if calls.Add(1) == 1 {
					close(entered)
					<-release
					p.Close()
					closed.Store(true)
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.DialUDP("udp4", nil, pc.Addr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("first")); err != nil {
				t.Fatal(err)
			}
			<-entered
			for range 10 {
				if _, err := c.Write([]byte("more")); err != nil {
					close(release)
					t.Fatal(err)
				}
			}
			waitUntil(t, "a datagram waiting behind the first", func() bool {
				n, _ := unix.IoctlGetInt(pc.fd, unix.SIOCINQ) // the next datagram's size
				return n > 0
			})
			close(release)
			pc.Close()
			if a := after.Load(); a != 0 {
				t.Fatalf("%d OnPacket calls after the handler's Close returned", a)
			}
		})
	}
}

// TestWriteToKeepsZone: a reply to a link-local IPv6 peer names the
// interface its zone does, as net's WriteTo, rather than leaving the
// kernel to pick one by route.
func TestWriteToKeepsZone(t *testing.T) {
	ifi, err := net.InterfaceByIndex(1)
	if err != nil {
		t.Skipf("no interface with index 1 to name a zone: %v", err)
	}
	from := sockaddrToAddrPort(&unix.SockaddrInet6{Port: 9, Addr: netip.MustParseAddr("fe80::1").As16(), ZoneId: uint32(ifi.Index)})
	if from.Addr().Zone() != ifi.Name {
		t.Fatalf("from = %v, want zone %s", from, ifi.Name)
	}
	sa, ok := addrPortToSockaddr(from, &net.UDPAddr{IP: net.IPv6unspecified}).(*unix.SockaddrInet6)
	if !ok {
		t.Fatalf("reply to %v: not an IPv6 sockaddr", from)
	}
	if sa.ZoneId != uint32(ifi.Index) {
		t.Fatalf("reply to %v: sockaddr ZoneId = %d, want %d (%s)", from, sa.ZoneId, ifi.Index, ifi.Name)
	}
}
