package reactor

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// The declarations in this file are the reactor's portable API: they build
// on every GOOS, so that a service importing the package builds on its
// developers' laptops; on Linux the rest of the package serves them, and
// elsewhere New reports that the reactor is Linux-only (unsupported.go).

// ListenConfig tunes a Listener. The zero value is usable. A timeout
// longer than a century acts as a century.
type ListenConfig struct {
	// MaxConns bounds the open Conns; 0 is unlimited. Beyond it a new
	// connection is accepted and closed at once, counted as Refused.
	MaxConns int
	// MaxPending is the unsent output, in bytes, above which the layer
	// stops reading a Conn until the socket has taken all of it; 0 means
	// 1 MiB, and values from 2 GiB - 1 up act as 2 GiB - 2.
	MaxPending int
	// IdleTimeout closes a Conn that moved no byte either way for this
	// long (OnClose's error wraps ErrIdleTimeout); 0 is none.
	IdleTimeout time.Duration
	// ReadTimeout closes a Conn from which no byte was read for this long
	// while the layer was reading it (OnClose's error wraps
	// os.ErrDeadlineExceeded); 0 is none.
	//
	// Both are watched by one sweep per loop rather than a timer per
	// Conn, so an idle Conn holds none: a Conn closes no earlier than its
	// timeout says, and at most 1/64 of the shortest idle or read timeout
	// among its loop's Conns later (for a 5-minute timeout, about 5
	// seconds; never less than 100µs).
	ReadTimeout time.Duration
	// WriteTimeout closes a Conn whose pending output made no progress
	// for this long: a peer that stopped reading (OnClose's error wraps
	// os.ErrDeadlineExceeded); 0 is none.
	WriteTimeout time.Duration
	// CloseTimeout bounds the flush of Close, Shutdown and peer EOF; a
	// flush still unfinished then ends in a forced close. 0 means 30s.
	CloseTimeout time.Duration
	// LingerTimeout bounds how long a closing Conn (Close, Shutdown, or
	// the layer's own close after a flush), its output flushed and its
	// write side shut, keeps reading and discarding what a peer that has
	// not closed yet still sends, so that the close does not reset the
	// connection with our last output undelivered. 0 means 2s; negative
	// closes as soon as the output is flushed.
	LingerTimeout time.Duration
	// Backlog is listen(2)'s backlog; 0 means the kernel's somaxconn.
	Backlog int
	// ReusePort opens one SO_REUSEPORT socket per loop, each accepting
	// on its own loop and serving its Conns there, instead of one socket
	// accepted on one loop that hands Conns to the loops in turn (the
	// default; the package doc says why). TCP only.
	ReusePort bool
	// NoDelay sets TCP_NODELAY on accepted TCP connections. The zero
	// value, ToggleDefault, turns it on, as Go's net does, so that a reply
	// written in pieces (a header, then a body) goes out at once instead
	// of waiting ~40 ms for the peer's delayed ACK; ToggleOff leaves
	// Nagle's algorithm on.
	NoDelay Toggle
	// KeepAlive is the TCP keepalive idle time and probe interval of
	// accepted connections: 0 means DefaultKeepAlive (15s, as Go's net),
	// negative turns keepalive off.
	KeepAlive time.Duration
	// SendInPlace lets a Write made in OnData, of bytes that end where
	// OnData's b ends (b itself, or a tail of it), send them from the
	// receive buffer they arrived in instead of copying them, where the
	// loop receives through io_uring into whole buffers of 16 KiB (the
	// default RecvBufferSize, not RecvIncremental): the buffer goes back
	// to the kernel once the send is done with it. The handler promises
	// not to modify those bytes after such a Write; without the promise
	// Write copies, as documented. An echo (echod sets it) or a proxy
	// that forwards what it read saves the copy: 3.6% of echod's CPU at
	// 16 KiB messages on io_uring. At most a quarter of a loop's buffers
	// are lent at once, and only receives of 4 KiB or more (copying less
	// costs less); otherwise Write copies.
	SendInPlace bool
}

// ListenerStats is a snapshot of a Listener's counters.
type ListenerStats struct {
	Accepted     uint64 // connections accepted and opened
	Refused      uint64 // accepted and closed at once (MaxConns)
	Active       int64  // open Conns
	Closed       uint64 // Conns whose OnClose ran (or that closed unopened)
	BytesIn      uint64
	BytesOut     uint64
	Paused       int64  // Conns not being read because of backpressure
	OutBuffer    int64  // bytes of memory holding the Conns' pending output
	Discarded    uint64 // bytes read from closing Conns and dropped (LingerTimeout)
	AcceptCalls  uint64 // accept4 calls, EAGAIN and errors included, and accepts armed through the ring (each serves many connections)
	AcceptErrors uint64 // accept4 failures other than EAGAIN/ECONNABORTED
	Backoffs     uint64 // times accepting paused on EMFILE/ENFILE/ENOBUFS/ENOMEM
}

// Handler receives a Listener's connection events. Its methods run on the
// Conn's loop goroutine, one at a time per Conn, and must not block.
//
// The order per Conn is OnOpen, then OnData for the bytes in the order
// they arrived (then OnEOF, for an EOFHandler), then OnClose, exactly once.
// A Close, CloseNow or CloseWrite made inside a handler call takes effect
// when the call returns, and no OnData follows a Close made there; one made
// from another goroutine takes effect when the loop next acts on it, so an
// OnData already under way, or one for bytes read in the same turn, can
// still run after that Close returned.
//
// SetContext and Context are safe from any goroutine without a lock of the
// handler's own. A Write error means the Conn is closing (ErrClosed) or
// condemned by a write error that its OnClose will also report: stop
// writing to it; there is nothing to retry.
type Handler interface {
	// OnOpen is called once, first, when the Conn was accepted.
	OnOpen(c *Conn)
	// OnData is called with bytes read from the Conn. b is the loop's read
	// buffer, valid only during the call and overwritten by the next
	// read: copy what you keep (Write copies what it queues, unless
	// ListenConfig.SendInPlace says the handler leaves b alone after
	// writing it).
	OnData(c *Conn, b []byte)
	// OnClose is called exactly once per opened Conn, last, after its fd
	// was closed. err is nil for a clean close (peer EOF after flushing,
	// Close, Shutdown) and says why otherwise.
	OnClose(c *Conn, err error)
}

// EOFHandler is a Handler that hears the peer's end of input. Without it
// the layer answers a peer's EOF by flushing pending output and closing
// (right for an echo). With it the Conn stays open for writing: OnEOF is
// called once, after OnData for every byte the peer sent, and the handler
// may still Write (a reply to a last line that had no terminator, say)
// and then Close, CloseWrite or CloseNow. Reading has stopped. Until the
// handler closes, the Conn lives on under IdleTimeout and WriteTimeout
// (ReadTimeout no longer applies), Shutdown and the reactor's Close.
type EOFHandler interface {
	Handler
	// OnEOF is called once when a read returned end of file.
	OnEOF(c *Conn)
}

// PacketHandler receives a PacketConn's datagrams on its loop goroutine.
type PacketHandler interface {
	// OnPacket is called for each datagram; b is valid only during the
	// call. It must not block.
	OnPacket(p *PacketConn, b []byte, from netip.AddrPort)
}

// Toggle is a socket switch whose zero value means "the default", so that
// a zero ListenConfig gets Go's net defaults.
type Toggle uint8

// The Toggle values.
const (
	ToggleDefault Toggle = iota // the option's documented default
	ToggleOn
	ToggleOff
)

// String names t: "default", "on" or "off".
func (t Toggle) String() string {
	switch t {
	case ToggleDefault:
		return "default"
	case ToggleOn:
		return "on"
	case ToggleOff:
		return "off"
	}
	return "Toggle(" + strconv.Itoa(int(t)) + ")"
}

// Socket defaults, as Go's net sets them on TCP connections it accepts
// and dials (net.ListenConfig.KeepAlive, net.KeepAliveConfig).
const (
	// DefaultKeepAlive is the keepalive idle time and probe interval of
	// TCP connections when none is configured.
	DefaultKeepAlive = 15 * time.Second
	// keepAliveCount is the number of unanswered probes before the kernel
	// drops the connection (net's defaultTCPKeepAliveCount).
	keepAliveCount = 9
)

// NetConfig sets the socket options of NetConns: NetListenWith applies it
// to the connections it accepts, DialWith to the one it dials. The zero
// value is Go's net defaults, which NetListen and DialContext use.
type NetConfig struct {
	// NoDelay sets TCP_NODELAY: ToggleDefault and ToggleOn turn it on,
	// ToggleOff leaves Nagle's algorithm on.
	NoDelay Toggle
	// KeepAlive is the TCP keepalive idle time and probe interval: 0
	// means DefaultKeepAlive, negative turns keepalive off.
	KeepAlive time.Duration
	// Backlog is listen(2)'s backlog; 0 means the kernel's somaxconn.
	Backlog int
	// Control, when set, is called with each socket NetListenWith or
	// DialWith makes, after it is made and before it is bound or
	// connected, as net.ListenConfig's and net.Dialer's Control are: for
	// the options that must come first (SO_REUSEPORT, SO_MARK,
	// SO_BINDTODEVICE, IP_TRANSPARENT). network and address are what net
	// passes: "tcp4", "tcp6" or "unix", and the address being bound or
	// dialed. Only c's Control may be used. An error fails the listen, or
	// the dial of that address (a dial goes on to the name's next
	// address), and the socket is closed. A dial may call it from
	// goroutines other than the caller's, two at once while the families
	// race (FallbackDelay), as net.Dialer does.
	Control func(network, address string, c syscall.RawConn) error
	// LocalAddr is the local address DialWith binds to before it
	// connects, as net.Dialer's: a *net.TCPAddr for TCP, only the name's
	// addresses of its IP's family being tried (a nil or unspecified IP,
	// 0.0.0.0 or ::, is any address of either family, and binds only the
	// port; port 0 is the kernel's choice); a *net.UnixAddr for Unix (no
	// name: nothing bound). nil lets the kernel choose. One difference
	// from net: each address is dialed in its own family, so from :: to
	// an IPv4 address the socket is IPv4 and Control is told "tcp4",
	// where net dials from a dual-stack IPv6 socket. NetListenWith
	// ignores it.
	LocalAddr net.Addr
	// FallbackDelay is how long a "tcp" dial of a name with both IPv6
	// and IPv4 addresses waits for the first family's before it also
	// dials the other's (RFC 6555 Happy Eyeballs, as net.Dialer's): 0
	// means 300 ms; negative dials every address one after another, in
	// the resolver's order. "tcp4", "tcp6" and "unix" dials, and
	// NetListenWith, ignore it.
	FallbackDelay time.Duration
	// Resolver looks up a dial's TCP host and port, as net.Dialer's:
	// nil means net.DefaultResolver. NetListenWith ignores it.
	Resolver *net.Resolver
}
