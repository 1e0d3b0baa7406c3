// Package echotest provides misbehaving echo servers for echoload's tests:
// each listens on loopback (port 0, or a socket in a temporary directory),
// counts what it echoed, and stops every goroutine it started on Close.
package echotest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is how a server misbehaves. The zero Fault is a correct echo.
type Fault struct {
	// CorruptAt, when > 0, flips the bits of the byte at this stream
	// offset (counted from 1) of the first connection to reach it.
	CorruptAt int64
	// ResetAt, when > 0, resets (SO_LINGER 0, close) a connection once it
	// has read this many bytes, without echoing the read that crossed it.
	ResetAt int64
	// ShortAt, when > 0, ends a connection's echo cleanly (FIN) once it
	// has read this many bytes, echoing only the bytes before that offset;
	// it then reads and discards until the client closes, so no reset
	// (RST for unread data) can overtake the FIN.
	ShortAt int64
	// HangAt, when > 0, stops echoing on a connection once it has read
	// this many bytes (it keeps reading and discarding) until Close.
	HangAt int64
	// ReplayAt, when > 0, makes the first read at or past this stream
	// offset that is as long as the read before it echo that earlier
	// read's bytes instead of its own: right length, stale content, the
	// way a server reusing a buffer wrongly would. Only a client whose
	// messages differ from each other can tell.
	ReplayAt int64
	// StallAt and StallFor: once a connection has read StallAt bytes it
	// waits StallFor before echoing them, once, then carries on.
	StallAt  int64
	StallFor time.Duration
}

// Server is a running test echo server.
type Server struct {
	ln      net.Listener   // nil for UDP
	pc      net.PacketConn // UDP only
	fault   Fault
	corrupt atomic.Bool  // the one corruption was done
	echoed  atomic.Int64 // bytes written back
	quit    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex // guards conns
	conns   map[net.Conn]struct{}
}

// Listen starts a stream server on network ("tcp" on 127.0.0.1:0, or
// "unix" on path) with fault f.
func Listen(network, path string, f Fault) (*Server, error) {
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = path
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, fault: f, quit: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// ListenUDP starts a correct UDP echo server on 127.0.0.1:0.
func ListenUDP() (*Server, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{pc: pc, quit: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, err := pc.WriteTo(buf[:n], from); err == nil {
				s.echoed.Add(int64(m))
			}
		}
	}()
	return s, nil
}

// Addr is the address to dial.
func (s *Server) Addr() string {
	if s.pc != nil {
		return s.pc.LocalAddr().String()
	}
	return s.ln.Addr().String()
}

// Echoed reports how many bytes the server has written back.
func (s *Server) Echoed() int64 { return s.echoed.Load() }

// Close stops the server, closes its connections and waits for every
// goroutine it started. It is idempotent.
func (s *Server) Close() { s.closing.Do(s.close) }

func (s *Server) close() {
	close(s.quit)
	if s.pc != nil {
		s.pc.Close()
	} else {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.quit:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// errStop ends a connection's loop on purpose.
var errStop = errors.New("stop")

// serve echoes c, applying the fault at its stream offsets.
func (s *Server) serve(c net.Conn) {
	f := s.fault
	buf := make([]byte, 32<<10)
	prev := make([]byte, 0, len(buf)) // the previous read's bytes (ReplayAt)
	var read int64                    // bytes read so far on c
	stalled, hung, replayed := false, false, false
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		from, to := read, read+int64(n) // this read covers offsets [from, to)
		read = to
		out := buf[:n]
		if hung {
			continue
		}
		if f.ResetAt > 0 && to >= f.ResetAt {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			return
		}
		if f.ShortAt > 0 && to >= f.ShortAt {
			s.write(c, out[:max(0, f.ShortAt-1-from)])
			if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				hung = true // discard from now on
				continue
			}
			return
		}
		if f.HangAt > 0 && to >= f.HangAt {
			hung = true
			continue
		}
		if f.ReplayAt > 0 && !replayed && to > f.ReplayAt && len(prev) == n {
			replayed = true
			copy(out, prev) // prev is then this read's own bytes below, unneeded
		} else if f.ReplayAt > 0 && !replayed {
			prev = append(prev[:0], out...)
		}
		if f.CorruptAt > 0 && from < f.CorruptAt && to >= f.CorruptAt && s.corrupt.CompareAndSwap(false, true) {
			out[f.CorruptAt-1-from] ^= 0xff
		}
		if f.StallAt > 0 && !stalled && to >= f.StallAt {
			stalled = true
			t := time.NewTimer(f.StallFor)
			select {
			case <-t.C:
			case <-s.quit:
				t.Stop()
				return
			}
		}
		if s.write(c, out) != nil {
			return
		}
	}
}

func (s *Server) write(c net.Conn, b []byte) error {
	n, err := c.Write(b)
	s.echoed.Add(int64(n))
	if err != nil {
		return errStop
	}
	return nil
}
