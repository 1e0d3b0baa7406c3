//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/oneshot-io/oneshot/reactor"
	"github.com/oneshot-io/oneshot/reactor/reactorprom"
)

// streamCounters is one stream listener's counters at one instant. The
// server adapter fills it from the reactor's ListenerStats.
type streamCounters struct {
	accepted, refused, closed uint64
	active, paused            int64 // gauges: open now, not read now (backpressure)
	outBuffer                 int64 // gauge: memory holding pending echo
	bytesIn, bytesOut         uint64
	acceptErrors, backoffs    uint64
}

// packetCounters is one UDP socket's counters at one instant.
type packetCounters struct {
	packetsIn, packetsOut uint64
	bytesIn, bytesOut     uint64
	sendErrors            uint64
	dropped               [numDropReasons]uint64 // by dropReason
}

// statsSource is what the collector reads at scrape time. Every func is
// called on the scraping goroutine and must be safe for that.
type statsSource struct {
	backend    string
	logDropped func() uint64        // log lines that could not be written; nil when unknown
	releases   func() uint64        // times memory was handed back after a burst; nil when unknown
	reactor    func() reactor.Stats // read by reactorprom's collector; nil: none
	streams    []streamSource
	packets    []packetSource
}

type streamSource struct {
	listener string // the bound address in --listen syntax: the metric label
	stats    func() streamCounters
}

type packetSource struct {
	listener string
	stats    func() packetCounters
}

// collector exposes a statsSource's echod_* families to Prometheus (the
// reactor's oneshot_* families are reactorprom's). It holds no counters of its
// own: each scrape reads the live values, so the figures cannot drift from
// what the reactor counted. Each family is declared once, in one of the
// tables below, with how a scrape reads it; Describe and Collect walk the
// tables, so a family cannot be described and not collected, or the reverse.
type collector struct {
	src         statsSource // constant after newCollector
	backendInfo *prometheus.Desc
	udpDropped  *prometheus.Desc // labelled by listener and reason: every reason, always
	logDropped  *prometheus.Desc
	streams     []family[streamCounters] // one series per stream listener
	packets     []family[packetCounters] // one series per UDP socket
}

// family is one metric family whose value a scrape reads from T, a
// snapshot of counters.
type family[T any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(T) float64
}

// counter and gauge declare a family; labels name the variable labels, in
// the order Collect passes their values.
func counter[T any](name, help string, value func(T) uint64, labels ...string) family[T] {
	return newFamily(prometheus.CounterValue, name, help, value, labels)
}

func gauge[T any](name, help string, value func(T) int64, labels ...string) family[T] {
	return newFamily(prometheus.GaugeValue, name, help, value, labels)
}

func newFamily[T any, N uint64 | int64](kind prometheus.ValueType, name, help string, value func(T) N, labels []string) family[T] {
	return family[T]{prometheus.NewDesc(name, help, labels, nil), kind, func(c T) float64 { return float64(value(c)) }}
}

func newCollector(src statsSource) *collector {
	type (
		s = streamCounters
		p = packetCounters
	)
	const l = "listener"
	return &collector{
		src:         src,
		backendInfo: prometheus.NewDesc("echod_backend_info", "The readiness backend in use (uring or epoll); always 1.", []string{"backend"}, nil),
		logDropped:  prometheus.NewDesc("echod_log_lines_dropped_total", "Log lines that could not be written (stderr a pipe whose reader is gone, a full disk) and were dropped.", nil, nil),
		udpDropped: prometheus.NewDesc("echod_udp_dropped_packets_total",
			"UDP datagrams received and not echoed, by reason: own_address (from one of echod's own sockets: a loop), port_zero, service_port (source port below 1024), bad_address (unspecified, multicast or broadcast source), rate_limited (beyond --udp-rate for the source).",
			[]string{l, "reason"}, nil),
		streams: []family[s]{
			counter("echod_connections_accepted_total", "Stream connections accepted and served.", func(c s) uint64 { return c.accepted }, l),
			counter("echod_connections_refused_total", "Stream connections closed at once because --max-conns were open.", func(c s) uint64 { return c.refused }, l),
			gauge("echod_connections_active", "Stream connections open now.", func(c s) int64 { return c.active }, l),
			gauge("echod_connections_paused", "Stream connections not read now because --max-pending bytes wait to be sent to them.", func(c s) int64 { return c.paused }, l),
			gauge("echod_output_buffer_bytes", "Memory holding the stream connections' pending echo (what is pending plus at most two 16 KiB chunks per connection; none while idle).", func(c s) int64 { return c.outBuffer }, l),
			counter("echod_connections_closed_total", "Stream connections closed.", func(c s) uint64 { return c.closed }, l),
			counter("echod_received_bytes_total", "Bytes read from stream connections.", func(c s) uint64 { return c.bytesIn }, l),
			counter("echod_sent_bytes_total", "Bytes written to stream connections.", func(c s) uint64 { return c.bytesOut }, l),
			counter("echod_accept_errors_total", "accept4 failures other than EAGAIN and ECONNABORTED.", func(c s) uint64 { return c.acceptErrors }, l),
			counter("echod_accept_backoffs_total", "Times accepting paused because descriptors or memory ran out.", func(c s) uint64 { return c.backoffs }, l),
		},
		packets: []family[p]{
			counter("echod_udp_received_packets_total", "UDP datagrams received.", func(c p) uint64 { return c.packetsIn }, l),
			counter("echod_udp_sent_packets_total", "UDP datagrams echoed.", func(c p) uint64 { return c.packetsOut }, l),
			counter("echod_udp_received_bytes_total", "UDP payload bytes received.", func(c p) uint64 { return c.bytesIn }, l),
			counter("echod_udp_sent_bytes_total", "UDP payload bytes echoed.", func(c p) uint64 { return c.bytesOut }, l),
			counter("echod_udp_send_errors_total", "UDP datagrams that could not be echoed.", func(c p) uint64 { return c.sendErrors }, l),
		},
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backendInfo
	ch <- c.udpDropped
	ch <- c.logDropped
	describe(ch, c.streams)
	describe(ch, c.packets)
}

func describe[T any](ch chan<- *prometheus.Desc, fams []family[T]) {
	for _, f := range fams {
		ch <- f.desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.backendInfo, prometheus.GaugeValue, 1, c.src.backend)
	if c.src.logDropped != nil {
		ch <- prometheus.MustNewConstMetric(c.logDropped, prometheus.CounterValue, float64(c.src.logDropped()))
	}
	for _, s := range c.src.streams {
		collect(ch, c.streams, s.stats(), s.listener)
	}
	for _, p := range c.src.packets {
		v := p.stats()
		collect(ch, c.packets, v, p.listener)
		for r, n := range v.dropped {
			ch <- prometheus.MustNewConstMetric(c.udpDropped, prometheus.CounterValue, float64(n), p.listener, dropReasonNames[r])
		}
	}
}

// collect sends one series of each family, read from the snapshot v.
func collect[T any](ch chan<- prometheus.Metric, fams []family[T], v T, labels ...string) {
	for _, f := range fams {
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, f.value(v), labels...)
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

// startMetrics listens on addr and serves the registry of src there, and
// with withPprof Go's profiles under /debug/pprof/. Its registry is private
// (no global default registry): the process and Go runtime collectors, and
// the collector over src.
func startMetrics(addr string, withPprof bool, src statsSource, log *zap.Logger) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		newCollector(src),
	)
	if src.releases != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "echod_memory_releases_total",
			Help: "Times echod collected garbage and handed memory back to the kernel because a burst of pending echo had drained.",
		}, func() float64 { return float64(src.releases()) }))
	}
	if src.reactor != nil {
		// The oneshot_* families come from the library's collector, the
		// one a service embedding the reactor registers too.
		reg.MustRegister(reactorprom.NewFromStats(src.reactor))
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	ln := newCapListener(tl, metricsMaxConns)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "echod_metrics_connections_refused_total",
		Help: "Connections to this metrics server closed at once because descriptors ran short: the last ones are kept for the echo listeners.",
	}, func() float64 { return float64(ln.refused.Load()) }))
	m := &metricsServer{addr: ln.Addr(), done: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
		Registry:          reg, // counts promhttp's own errors in the same registry
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", m.healthz)
	if withPprof {
		servePprof(mux)
	}
	// The timeouts keep a slow or idle client from holding one of the
	// few connections (capListener) for long; a scrape writes well within
	// WriteTimeout.
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
	}
	go func() { m.done <- m.srv.Serve(ln) }()
	return m, nil
}

// servePprof serves net/http/pprof's handlers on mux, not on
// http.DefaultServeMux (where the package's init also puts them, unserved
// here). A CPU profile or trace holds one of the server's few connections
// (capListener) for the seconds it asks for; pprof moves the connection's
// write deadline past them.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, threadcreate
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
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

// close stops the HTTP server, giving in-flight scrapes metricsGrace, then
// closing what is left, and waits for its goroutine to return. What is
// left is a connection that sent no whole request: a port probe, a
// scraper that connected early, a slowloris, which Shutdown alone waited
// for (2 s then), past --shutdown-timeout and past a second signal.
func (m *metricsServer) close() error {
	var err error
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsGrace)
		defer cancel()
		if m.srv.Shutdown(ctx) != nil {
			err = m.srv.Close()
		}
		if serr := <-m.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	})
	return err
}

// metricsGrace is how long close lets a scrape in flight finish.
const metricsGrace = 200 * time.Millisecond
