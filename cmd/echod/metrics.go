package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// streamCounters is one stream listener's counters at one instant. The
// server adapter fills it from the reactor's ListenerStats.
type streamCounters struct {
	accepted, refused, closed uint64
	active, paused            int64 // gauges: open now, not read now (backpressure)
	bytesIn, bytesOut         uint64
	acceptErrors, backoffs    uint64
}

// packetCounters is one UDP socket's counters at one instant.
type packetCounters struct {
	packetsIn, packetsOut uint64
	bytesIn, bytesOut     uint64
	sendErrors            uint64
}

// reactorCounters is the reactor's Stats at one instant, in the shape the
// metrics want: requests armed, completed by outcome, stale kernel events
// dropped, and the syscalls that entered the kernel.
type reactorCounters struct {
	armed        uint64
	completed    map[string]uint64 // outcome ("ready", "error", "canceled", "closed") → count
	outstanding  int64             // gauge: armed and not yet completed
	backendArmed int64             // gauge: polls the kernel side still holds
	timers       int64             // gauge: deadlines on the loops' heaps
	staleDropped uint64
	rearmed      uint64
	wakeups      uint64
	loopTurns    uint64
	kernelEnters uint64
	eventsReaped uint64
}

// statsSource is what the collector reads at scrape time. Every func is
// called on the scraping goroutine and must be safe for that.
type statsSource struct {
	backend string
	reactor func() reactorCounters
	streams []streamSource
	packets []packetSource
}

type streamSource struct {
	listener string // the bound address in --listen syntax: the metric label
	stats    func() streamCounters
}

type packetSource struct {
	listener string
	stats    func() packetCounters
}

// collector exposes a statsSource to Prometheus. It holds no counters of its
// own: each scrape reads the live values, so the figures cannot drift from
// what the reactor counted.
type collector struct {
	src statsSource

	backendInfo, armed, completed, outstanding, stale, rearmed *prometheus.Desc
	wakeups, turns, enters, reaped, backendArmed, timers       *prometheus.Desc
	accepted, refused, active, paused, closed                  *prometheus.Desc
	bytesIn, bytesOut, acceptErrors, backoffs                  *prometheus.Desc
	pktIn, pktOut, pktBytesIn, pktBytesOut, pktErrors          *prometheus.Desc
}

func newCollector(src statsSource) *collector {
	l := []string{"listener"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		src:          src,
		backendInfo:  d("echod_backend_info", "The readiness backend in use (uring or epoll); always 1.", []string{"backend"}),
		armed:        d("oneshot_requests_armed_total", "One-shot poll requests the reactor accepted.", nil),
		completed:    d("oneshot_requests_completed_total", "One-shot poll requests completed, by outcome.", []string{"outcome"}),
		outstanding:  d("oneshot_requests_outstanding", "One-shot poll requests armed and not yet completed.", nil),
		stale:        d("oneshot_stale_events_dropped_total", "Kernel completions or events for requests already finished, dropped by their generation tag.", nil),
		rearmed:      d("oneshot_events_rearmed_total", "Events for the other direction of a shared fd, which re-armed instead of completing.", nil),
		wakeups:      d("oneshot_loop_wakeups_total", "Times another goroutine woke a sleeping event loop.", nil),
		turns:        d("oneshot_loop_turns_total", "Event loop iterations (one wait each).", nil),
		enters:       d("oneshot_kernel_enters_total", "Syscalls the event loops made to arm and wait (io_uring_enter, or epoll_ctl and epoll_wait).", nil),
		reaped:       d("oneshot_events_reaped_total", "Events harvested from the backend.", nil),
		backendArmed: d("oneshot_backend_armed", "Polls the backend (io_uring or epoll) still holds armed, late completions owed included.", nil),
		timers:       d("oneshot_timers", "Deadlines on the event loops' timer heaps (idle timeouts among them).", nil),
		accepted:     d("echod_connections_accepted_total", "Stream connections accepted and served.", l),
		refused:      d("echod_connections_refused_total", "Stream connections closed at once because --max-conns were open.", l),
		active:       d("echod_connections_active", "Stream connections open now.", l),
		paused:       d("echod_connections_paused", "Stream connections not read now because --max-pending bytes wait to be sent to them.", l),
		closed:       d("echod_connections_closed_total", "Stream connections closed.", l),
		bytesIn:      d("echod_received_bytes_total", "Bytes read from stream connections.", l),
		bytesOut:     d("echod_sent_bytes_total", "Bytes written to stream connections.", l),
		acceptErrors: d("echod_accept_errors_total", "accept4 failures other than EAGAIN and ECONNABORTED.", l),
		backoffs:     d("echod_accept_backoffs_total", "Times accepting paused because descriptors or memory ran out.", l),
		pktIn:        d("echod_udp_received_packets_total", "UDP datagrams received.", l),
		pktOut:       d("echod_udp_sent_packets_total", "UDP datagrams echoed.", l),
		pktBytesIn:   d("echod_udp_received_bytes_total", "UDP payload bytes received.", l),
		pktBytesOut:  d("echod_udp_sent_bytes_total", "UDP payload bytes echoed.", l),
		pktErrors:    d("echod_udp_send_errors_total", "UDP datagrams that could not be echoed.", l),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.backendInfo, c.armed, c.completed, c.outstanding, c.stale, c.rearmed,
		c.wakeups, c.turns, c.enters, c.reaped, c.backendArmed, c.timers,
		c.accepted, c.refused, c.active, c.paused, c.closed,
		c.bytesIn, c.bytesOut, c.acceptErrors, c.backoffs,
		c.pktIn, c.pktOut, c.pktBytesIn, c.pktBytesOut, c.pktErrors,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(c.backendInfo, 1, c.src.backend)
	if c.src.reactor != nil {
		r := c.src.reactor()
		counter(c.armed, r.armed)
		for outcome, n := range r.completed {
			counter(c.completed, n, outcome)
		}
		gauge(c.outstanding, r.outstanding)
		counter(c.stale, r.staleDropped)
		counter(c.rearmed, r.rearmed)
		counter(c.wakeups, r.wakeups)
		counter(c.turns, r.loopTurns)
		counter(c.enters, r.kernelEnters)
		counter(c.reaped, r.eventsReaped)
		gauge(c.backendArmed, r.backendArmed)
		gauge(c.timers, r.timers)
	}
	for _, s := range c.src.streams {
		st := s.stats()
		counter(c.accepted, st.accepted, s.listener)
		counter(c.refused, st.refused, s.listener)
		gauge(c.active, st.active, s.listener)
		gauge(c.paused, st.paused, s.listener)
		counter(c.closed, st.closed, s.listener)
		counter(c.bytesIn, st.bytesIn, s.listener)
		counter(c.bytesOut, st.bytesOut, s.listener)
		counter(c.acceptErrors, st.acceptErrors, s.listener)
		counter(c.backoffs, st.backoffs, s.listener)
	}
	for _, p := range c.src.packets {
		st := p.stats()
		counter(c.pktIn, st.packetsIn, p.listener)
		counter(c.pktOut, st.packetsOut, p.listener)
		counter(c.pktBytesIn, st.bytesIn, p.listener)
		counter(c.pktBytesOut, st.bytesOut, p.listener)
		counter(c.pktErrors, st.sendErrors, p.listener)
	}
}

// metricsServer serves /metrics and /healthz over HTTP from the standard
// library's server: it must keep answering while the reactor is busy or
// shutting down, so it does not run on the reactor it observes.
type metricsServer struct {
	addr     net.Addr
	srv      *http.Server
	done     chan error  // Serve's result; closed-over by close
	draining atomic.Bool // set on the first signal: /healthz turns 503
	once     sync.Once   // guards close
}

// startMetrics listens on addr and serves the registry of src there. Its
// registry is private (no global default registry): the process and Go
// runtime collectors, and the collector over src.
func startMetrics(addr string, src statsSource, log *zap.Logger) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		newCollector(src),
	)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m := &metricsServer{addr: ln.Addr(), done: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
		Registry:          reg, // counts promhttp's own errors in the same registry
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", m.healthz)
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
	}
	go func() { m.done <- m.srv.Serve(ln) }()
	return m, nil
}

// healthz answers 200 "ok" while echod serves and 503 "draining" once it is
// shutting down, so that a load balancer stops sending it new clients.
func (m *metricsServer) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if m.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "draining")
		return
	}
	fmt.Fprintln(w, "ok")
}

// close stops the HTTP server, giving in-flight scrapes a moment, and waits
// for its goroutine to return.
func (m *metricsServer) close() error {
	var err error
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = m.srv.Shutdown(ctx)
		if serr := <-m.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	})
	return err
}
