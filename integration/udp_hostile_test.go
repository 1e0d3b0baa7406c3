package integration_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUDPSpoofedLoop sends echod one datagram whose source address is
// echod's own UDP socket, or its other UDP socket, as a raw socket can on
// loopback (and source spoofing on a network). Echoing it would make echod
// answer itself forever (a loop that burned a whole core from one packet):
// echod must drop it, count it under its reason, and stay idle.
func TestUDPSpoofedLoop(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "udp:127.0.0.1:0", "--listen", "udp:127.0.0.1:0",
				"--metrics-addr", "127.0.0.1:0")
			a, b := udpAddrPort(t, d.addrs[0]), udpAddrPort(t, d.addrs[1])
			for _, tt := range []struct {
				name     string
				from, to netip.AddrPort
			}{
				{"own address", a, a},
				{"other listener", b, a},
			} {
				t.Run(tt.name, func(t *testing.T) {
					to := "udp:" + tt.to.String()
					before := d.metrics()
					spoofUDP(t, tt.from, tt.to, []byte("loop?"))
					// The datagram is in once echod counted it; from then on
					// an echo loop, if any, is running.
					waitUntil(t, "echod receives the spoofed datagram", func() bool {
						return d.metrics()[labelled("echod_udp_received_packets_total", to)] > before[labelled("echod_udp_received_packets_total", to)]
					})
					cpu := cpuOver(t, d.cmd.Process.Pid, time.Second)
					t.Logf("echod CPU in the second after one spoofed datagram from %v: %v", tt.from, cpu)
					// An idle echod uses next to nothing; the loop used a
					// whole core (~1s in 1s).
					if cpu > 100*time.Millisecond {
						t.Errorf("echod used %v of CPU in the second after one datagram from %v: an echo loop", cpu, tt.from)
					}
					after := d.metrics()
					dropped := labelled("echod_udp_dropped_packets_total", to, "reason", "own_address")
					if _, ok := after[dropped]; !ok {
						t.Fatalf("/metrics has no %s", dropped)
					}
					if got := after[dropped] - before[dropped]; got != 1 {
						t.Errorf("%s moved by %v, want 1", dropped, got)
					}
					for _, l := range []string{"udp:" + a.String(), "udp:" + b.String()} {
						sent := labelled("echod_udp_sent_packets_total", l)
						if after[sent] != before[sent] {
							t.Errorf("%s moved from %v to %v: echod answered a spoofed datagram", sent, before[sent], after[sent])
						}
					}
				})
			}
			// A real client is still answered.
			c := dial(t, d.addrs[0])
			if err := udpRoundTrip(c, []byte("still here")); err != nil {
				t.Fatal(err)
			}
			d.stop()
		})
	}
}

// TestUDPSpoofedLoopWildcard: a socket bound to 0.0.0.0 receives on every
// address of the host, so a datagram from any of them with the socket's
// port (here: the host's own non-loopback address) is echod talking to
// itself too.
func TestUDPSpoofedLoopWildcard(t *testing.T) {
	host := hostIPv4(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "udp:0.0.0.0:0", "--metrics-addr", "127.0.0.1:0")
			port := udpAddrPort(t, d.addr()).Port()
			before := d.metrics()
			spoofUDP(t, netip.AddrPortFrom(host, port), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), []byte("loop?"))
			in := labelled("echod_udp_received_packets_total", d.addr())
			waitUntil(t, "echod receives the spoofed datagram", func() bool { return d.metrics()[in] > before[in] })
			cpu := cpuOver(t, d.cmd.Process.Pid, time.Second)
			t.Logf("echod CPU in the second after one datagram from %v: %v", netip.AddrPortFrom(host, port), cpu)
			if cpu > 100*time.Millisecond {
				t.Errorf("echod used %v of CPU in the second after one datagram from its own address: an echo loop", cpu)
			}
			dropped := labelled("echod_udp_dropped_packets_total", d.addr(), "reason", "own_address")
			if got := d.metrics()[dropped] - before[dropped]; got != 1 {
				t.Errorf("%s moved by %v, want 1", dropped, got)
			}
			d.stop()
		})
	}
}

// hostIPv4 returns an IPv4 address of this host other than loopback, or
// skips the test.
func hostIPv4(t *testing.T) netip.Addr {
	t.Helper()
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("interface addresses: %v", err)
	}
	for _, ifa := range ifas {
		if n, ok := ifa.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap().Is4() && !a.IsLoopback() {
				return a.Unmap()
			}
		}
	}
	t.Skip("no IPv4 address other than loopback")
	return netip.Addr{}
}

// TestUDPPingPongBounded: one datagram spoofed from one echod to another
// starts a ping-pong that neither can tell from a client (the other is
// another process, maybe another host); --udp-rate bounds it on both.
func TestUDPPingPongBounded(t *testing.T) {
	const rate = 100
	args := []string{"--listen", "udp:127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--udp-rate", strconv.Itoa(rate)}
	a, b := startEchod(t, args...), startEchod(t, args...)
	start := time.Now()
	spoofUDP(t, udpAddrPort(t, b.addr()), udpAddrPort(t, a.addr()), []byte("ping"))
	limited := func(d *daemon) float64 {
		return d.metrics()[labelled("echod_udp_dropped_packets_total", d.addr(), "reason", "rate_limited")]
	}
	// The ping-pong runs at full speed until a burst is spent.
	waitUntil(t, "the ping-pong reaches --udp-rate", func() bool { return limited(a)+limited(b) > 0 })
	cpuA, cpuB := cpuOver(t, a.cmd.Process.Pid, time.Second), cpuOver(t, b.cmd.Process.Pid, time.Second)
	t.Logf("ping-pong at --udp-rate %d: CPU in one second: %v and %v", rate, cpuA, cpuB)
	for _, d := range []*daemon{a, b} {
		sent := d.metrics()[labelled("echod_udp_sent_packets_total", d.addr())]
		elapsed := time.Since(start)
		if allowed := rate + rate*elapsed.Seconds() + 1; sent > allowed {
			t.Errorf("%s echoed %v datagrams in %v; --udp-rate %d allows %.0f", d.addr(), sent, elapsed, rate, allowed)
		}
	}
	for _, cpu := range []time.Duration{cpuA, cpuB} {
		if cpu > 200*time.Millisecond {
			t.Errorf("echod used %v of CPU in a second of rate-limited ping-pong", cpu)
		}
	}
	a.stop()
	b.stop()
}

// TestUDPDropsHostileSources: datagrams from source port 0 and from
// well-known service ports (7 echo, 19 chargen, 53 dns) are dropped and
// counted: answering them would feed a service that answers back
// (the classic echo/chargen ping-pong).
func TestUDPDropsHostileSources(t *testing.T) {
	d := startEchod(t, "--listen", "udp:127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	to := udpAddrPort(t, d.addr())
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		port   uint16
		reason string
	}{
		{0, "port_zero"},
		{7, "service_port"},
		{19, "service_port"},
		{53, "service_port"},
		{1023, "service_port"},
	} {
		t.Run(strconv.Itoa(int(tt.port)), func(t *testing.T) {
			before := d.metrics()
			spoofUDP(t, netip.AddrPortFrom(lo, tt.port), to, []byte("hello"))
			key := labelled("echod_udp_dropped_packets_total", d.addr(), "reason", tt.reason)
			sent := labelled("echod_udp_sent_packets_total", d.addr())
			failed := labelled("echod_udp_send_errors_total", d.addr()) // port 0: sendto refuses it
			var after map[string]float64
			// Its fate is known once it is counted as echoed, dropped or
			// failed.
			waitUntil(t, "echod echoes or drops the datagram", func() bool {
				after = d.metrics()
				return after[key] > before[key] || after[sent] > before[sent] || after[failed] > before[failed]
			})
			if _, ok := after[key]; !ok {
				t.Fatalf("/metrics has no %s", key)
			}
			if got := after[key] - before[key]; got != 1 {
				t.Errorf("%s moved by %v, want 1", key, got)
			}
			if after[sent] != before[sent] {
				t.Errorf("%s moved from %v to %v: echod answered port %d", sent, before[sent], after[sent], tt.port)
			}
		})
	}
	d.stop()
}

// TestUDPRateLimit: one source host gets at most --udp-rate replies a
// second (after a burst of as many); the rest are dropped and counted, and
// other hosts are still answered.
func TestUDPRateLimit(t *testing.T) {
	const (
		rate = 20
		// sent datagrams of a few bytes fit in echod's socket receive
		// buffer (the kernel drops none), so that echod counts each.
		sent = 100
	)
	d := startEchod(t, "--listen", "udp:127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--udp-rate", strconv.Itoa(rate))
	c := dial(t, d.addr())
	start := time.Now()
	for i := range sent {
		if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	in := labelled("echod_udp_received_packets_total", d.addr())
	out := labelled("echod_udp_sent_packets_total", d.addr())
	limited := labelled("echod_udp_dropped_packets_total", d.addr(), "reason", "rate_limited")
	var m map[string]float64
	waitUntil(t, "every datagram received, then echoed or dropped", func() bool {
		m = d.metrics()
		return m[in] == sent && m[in] == m[out]+m[limited]
	})
	elapsed := time.Since(start)
	if allowed := rate + rate*elapsed.Seconds() + 1; m[out] > allowed {
		t.Errorf("echoed %v datagrams to one source in %v; --udp-rate %d allows at most %.0f", m[out], elapsed, rate, allowed)
	}
	if m[out] < rate {
		t.Errorf("echoed %v of %v datagrams: want at least the burst of %d", m[out], m[in], rate)
	}
	if m[limited] == 0 {
		t.Errorf("%s is 0 after %v datagrams from one source", limited, m[in])
	}
	// Other hosts (on loopback, other 127/8 addresses) have budgets of
	// their own, whatever the first one spent. Hosts whose buckets
	// collide share one (1 in 4096 for two hosts): of three, at least two
	// must be answered.
	before := m
	const others = 3
	for i := range others {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}, net.UDPAddrFromAddrPort(udpAddrPort(t, d.addr())))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("another host")); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the other hosts' datagrams echoed or dropped", func() bool {
		m = d.metrics()
		return m[in] == before[in]+others && m[in] == m[out]+m[limited]
	})
	if got := m[out] - before[out]; got < others-1 {
		t.Errorf("%v of %d datagrams from other hosts echoed after one host spent its budget, want at least %d", got, others, others-1)
	}
	d.stop()
}

// udpRoundTrip sends p on c and reads one datagram back, requiring p.
func udpRoundTrip(c net.Conn, p []byte) error {
	if err := c.SetDeadline(time.Now().Add(bound)); err != nil {
		return err
	}
	if _, err := c.Write(p); err != nil {
		return err
	}
	buf := make([]byte, len(p)+1)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("no echo of %q: %w", p, err)
	}
	if string(buf[:n]) != string(p) {
		return fmt.Errorf("echo %q, want %q", buf[:n], p)
	}
	return nil
}

// labelled is a metric's key in daemon.metrics: name{listener="l",k="v"...}.
func labelled(name, listener string, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s{listener=%q", name, listener)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, ",%s=%q", kv[i], kv[i+1])
	}
	b.WriteString("}")
	return b.String()
}

// udpAddrPort parses a bound address in --listen syntax, udp:IP:PORT.
func udpAddrPort(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(addr, "udp:"))
	if err != nil || !strings.HasPrefix(addr, "udp:") {
		t.Fatalf("%q is not a udp:IP:PORT address: %v", addr, err)
	}
	return ap
}

// spoofUDP sends one IPv4 UDP datagram with any source address through a
// raw socket (IPPROTO_RAW implies IP_HDRINCL: we write the IP header). It
// skips the test where raw sockets are not allowed (no CAP_NET_RAW).
func spoofUDP(t *testing.T, from, to netip.AddrPort, payload []byte) {
	t.Helper()
	if !from.Addr().Is4() || !to.Addr().Is4() {
		t.Fatalf("spoofUDP: IPv4 only (%v → %v)", from, to)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.Skipf("raw socket: %v (spoofing a source address needs CAP_NET_RAW)", err)
	}
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)

	const ipLen, udpLen = 20, 8
	pkt := make([]byte, ipLen+udpLen+len(payload))
	src, dst := from.Addr().As4(), to.Addr().As4()
	// IPv4 header: version 4, 5 words; no options, not fragmented.
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], 0x1515) // identification
	pkt[8] = 64                                 // TTL
	pkt[9] = unix.IPPROTO_UDP
	copy(pkt[12:16], src[:])
	copy(pkt[16:20], dst[:])
	binary.BigEndian.PutUint16(pkt[10:], checksum(pkt[:ipLen], 0))
	// UDP header and payload; the checksum covers a pseudo-header.
	u := pkt[ipLen:]
	binary.BigEndian.PutUint16(u[0:], from.Port())
	binary.BigEndian.PutUint16(u[2:], to.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[udpLen:], payload)
	pseudo := make([]byte, 0, 12)
	pseudo = append(pseudo, src[:]...)
	pseudo = append(pseudo, dst[:]...)
	pseudo = append(pseudo, 0, unix.IPPROTO_UDP)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(u)))
	sum := checksum(u, sumWords(pseudo, 0))
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(u[6:], sum)
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
		t.Fatalf("send spoofed datagram %v → %v: %v", from, to, err)
	}
}

// sumWords adds b as big-endian 16-bit words to sum (one's complement
// arithmetic is done by checksum's fold).
func sumWords(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	sum = sumWords(b, sum)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// cpuOver returns the CPU time (user + system) process pid uses in the
// next d.
func cpuOver(t *testing.T, pid int, d time.Duration) time.Duration {
	t.Helper()
	start := procCPU(t, pid)
	<-time.After(d) // the measuring window, not a wait for something to happen
	return procCPU(t, pid) - start
}

// procCPU reads utime + stime of pid from /proc/PID/stat.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// Fields 14 and 15 of stat(5), utime and stime, are 11 and 12 here.
	if len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %q", pid, s)
		}
		ticks += n
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ticks) * (time.Second / 100)
}
