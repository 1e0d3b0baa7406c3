//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/oneshot-io/oneshot/reactor"
)

// reactorServer serves every --listen address on one reactor.
type reactorServer struct {
	r       *reactor.Reactor    // constant after startReactor
	log     *zap.Logger         // constant after startReactor
	streams []*reactor.Listener // constant after startReactor
	packets []*udpEcho          // constant after startReactor
	bound   []string            // bound addresses in --listen syntax, flag order
	labels  []string            // per stream: its bound address, the metric label
	sockets []socketFile        // Unix socket files echod created, to remove on close
	release *releaser           // started once every listener serves; stopped by close
}

// startReactor is the startFunc that serves on the oneshot reactor.
func startReactor(cfg config, log *zap.Logger) (server, error) {
	r, err := reactor.New(reactor.Config{
		Backend: reactor.Backend(cfg.backend),
		IO:      ioConfig(cfg.io),

		RecvBuffers:     cfg.recvBuffers,
		RecvBufferSize:  cfg.recvBufferSize,
		RecvIncremental: cfg.recvIncremental,
		Loops:           cfg.loops,
		LockLoops:       cfg.lockLoops,
		KernelWait:      cfg.kernelWait,
		Logger:          reactorLogger(log, cfg.logLevel),
	})
	if err != nil {
		return nil, fmt.Errorf("--backend %s: %w", cfg.backend, err)
	}
	s := &reactorServer{r: r, log: log}
	h := echoHandler{log: log}
	lc := listenConfig(cfg)
	// Every UDP socket refuses datagrams from all of them; each one's
	// address joins the set as soon as it is bound, before the next bind.
	own := new(atomic.Pointer[ownAddrs])
	own.Store(newOwnAddrs(nil))
	for _, a := range cfg.listen {
		if !a.isPacket() || !wildcardHost(a.address) {
			continue
		}
		// Only a socket bound to every address needs the host's list.
		local, err := localAddrs()
		if err != nil {
			log.Warn("cannot list the host's addresses: UDP sockets bound to every address refuse datagrams from their own port on loopback only; --udp-rate bounds a loop through any other", zap.Error(err))
		}
		own.Store(newOwnAddrs(local))
		break
	}
	for _, a := range cfg.listen {
		if a.isPacket() {
			u := &udpEcho{log: log, own: own}
			if cfg.udpRate > 0 {
				u.rate = newRateTable(cfg.udpRate, time.Now())
			}
			u.pc, err = r.ListenPacket(a.network, a.address, u)
			if err != nil {
				s.close() //nolint:errcheck // the listen error is the one to report
				return nil, fmt.Errorf("--listen %s: %w", a, err)
			}
			ua, ok := u.pc.Addr().(*net.UDPAddr)
			if !ok {
				panic(fmt.Sprintf("echod: UDP socket bound to a %T", u.pc.Addr()))
			}
			own.Store(own.Load().with(ua.AddrPort()))
			s.packets = append(s.packets, u)
			u.label = formatAddr(a.network, u.pc.Addr().String())
			s.bound = append(s.bound, u.label)
			continue
		}
		if a.network == "unix" && !isAbstract(a.address) {
			if err := removeStaleSocket(a.address, log); err != nil {
				s.close() //nolint:errcheck // the listen error is the one to report
				return nil, fmt.Errorf("--listen %s: %w", a, err)
			}
		}
		var l *reactor.Listener
		if a.network == "fd" {
			l, err = listenInherited(r, a.address, h, lc)
		} else {
			l, err = r.Listen(a.network, a.address, h, lc)
		}
		if err != nil {
			s.close() //nolint:errcheck // the listen error is the one to report
			return nil, fmt.Errorf("--listen %s: %w", a, err)
		}
		s.streams = append(s.streams, l)
		if a.network == "unix" && !isAbstract(a.address) {
			f, err := boundSocketFile(a.address)
			if err != nil {
				s.close() //nolint:errcheck // the listen error is the one to report
				return nil, fmt.Errorf("--listen %s: %w", a, err)
			}
			s.sockets = append(s.sockets, f)
		}
		network := a.network
		if network == "fd" {
			network = l.Addr().Network() // what the inherited socket is: tcp or unix
		}
		label := formatAddr(network, l.Addr().String())
		s.labels = append(s.labels, label)
		s.bound = append(s.bound, label)
	}
	peaks := make([]func() int64, len(s.streams))
	for i, l := range s.streams {
		peaks[i] = l.TakeOutBufferPeak
	}
	s.release = startReleaser(peaks)
	return s, nil
}

// minCloseTimeout is the least time a stream flush that makes no progress
// (after a peer's EOF, or during shutdown) is given before the connection
// is closed anyway: the reactor's own default.
const minCloseTimeout = 30 * time.Second

// listenConfig is the reactor's configuration for every stream listener.
// Its CloseTimeout stays above --shutdown-timeout: during a graceful
// shutdown --shutdown-timeout must be what ends a drain that cannot finish,
// since only its expiry is reported (exit status 1). A flush bound that
// expired first would close a stuck peer, discarding its echo, and echod
// would exit 0 as if nothing had been dropped.
func listenConfig(cfg config) reactor.ListenConfig {
	return reactor.ListenConfig{
		MaxConns:     cfg.maxConns,
		MaxPending:   cfg.maxPending,
		IdleTimeout:  cfg.idleTimeout,
		CloseTimeout: max(minCloseTimeout, 2*cfg.shutdownTimeout),
		// The echo handler writes what it is handed and never touches it
		// again: its sends may read the receive buffer itself.
		SendInPlace: true,
	}
}

// reactorLogger is the logger the reactor gets. Below debug, it is raised to
// warn: the reactor announces its backend at info, and echod's one startup
// line already carries that; at debug, everything the reactor says is kept.
func reactorLogger(log *zap.Logger, level string) *zap.Logger {
	l := log.Named("reactor")
	if level == "debug" {
		return l
	}
	return l.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
}

func (s *reactorServer) addrs() []string { return s.bound }

func (s *reactorServer) loops() int { return s.r.Loops() }

func (s *reactorServer) backend() (string, string) {
	return string(s.r.Backend()), s.r.BackendReason()
}

func (s *reactorServer) io() string { return s.r.IOPath() }

// ioConfig maps --io to reactor.Config.IO.
func ioConfig(io string) reactor.IOMode {
	if io == "poll" {
		return reactor.IOPoll
	}
	return reactor.IOAuto
}

func (s *reactorServer) stats() statsSource {
	src := statsSource{
		backend: string(s.r.Backend()),
		reactor: s.r.Stats,
	}
	if s.release != nil {
		src.releases = s.release.count.Load
	}
	for i, l := range s.streams {
		src.streams = append(src.streams, streamSource{
			listener: s.labels[i],
			stats: func() streamCounters {
				st := l.Stats()
				return streamCounters{
					accepted: st.Accepted, refused: st.Refused, closed: st.Closed,
					active: st.Active, paused: st.Paused, outBuffer: st.OutBuffer,
					bytesIn: st.BytesIn, bytesOut: st.BytesOut,
					acceptErrors: st.AcceptErrors, backoffs: st.Backoffs,
				}
			},
		})
	}
	for _, u := range s.packets {
		src.packets = append(src.packets, packetSource{listener: u.label, stats: u.counters})
	}
	return src
}

// shutdown drains every stream listener at once and closes the UDP sockets
// (a datagram in flight has no connection to finish).
func (s *reactorServer) shutdown(ctx context.Context) error {
	errs := make([]error, len(s.streams)+len(s.packets))
	var wg sync.WaitGroup
	for i, l := range s.streams {
		wg.Go(func() { errs[i] = l.Shutdown(ctx) })
	}
	for i, u := range s.packets {
		errs[len(s.streams)+i] = u.pc.Close()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *reactorServer) close() error {
	if s.release != nil {
		s.release.close()
	}
	errs := []error{s.r.Close()}
	for _, f := range s.sockets {
		errs = append(errs, f.remove(s.log))
	}
	return errors.Join(errs...)
}

// echoHandler echoes every stream connection. It runs on the reactor's
// loops: nothing in it blocks.
type echoHandler struct{ log *zap.Logger }

func (h echoHandler) OnOpen(c *reactor.Conn) {
	if ce := h.log.Check(zap.DebugLevel, "connection opened"); ce != nil {
		ce.Write(zap.Stringer("remote", c.RemoteAddr()))
	}
}

// OnData hands b back to the connection, which sends it from its receive
// buffer on io_uring (SendInPlace: b is never touched again) and copies it
// otherwise: the layer stops
// reading once --max-pending bytes wait to be sent. A failed Write means the
// connection is closing, and OnClose reports why: logging it here too would
// say it twice.
func (h echoHandler) OnData(c *reactor.Conn, b []byte) {
	_, _ = c.Write(b)
}

func (h echoHandler) OnClose(c *reactor.Conn, err error) {
	if ce := h.log.Check(zap.DebugLevel, "connection closed"); ce != nil {
		ce.Write(zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
	}
}

// listenInherited serves the listening socket echod inherited on
// descriptor fd (--listen fd:N), as systemd passes one under socket
// activation. The reactor works on a duplicate, so echod's copy is closed.
func listenInherited(r *reactor.Reactor, fd string, h reactor.Handler, lc reactor.ListenConfig) (*reactor.Listener, error) {
	n, _ := strconv.Atoi(fd) // checked by parseListenAddr
	f := os.NewFile(uintptr(n), "fd:"+fd)
	if f == nil {
		return nil, fmt.Errorf("descriptor %s is not open", fd)
	}
	defer f.Close()
	return r.ListenFile(f, h, lc)
}
