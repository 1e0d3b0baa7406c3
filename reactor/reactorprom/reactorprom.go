// Package reactorprom exposes a reactor's counters to Prometheus, so that a
// service embedding the reactor can scrape what echod scrapes. A Collector
// reads Reactor.Stats for the oneshot_* families and, for every Listener
// or NetListener added, its ListenerStats for the oneshot_listener_*
// families, labelled by the listener's name. It keeps no counters of its own: every scrape reads
// the live values, so the figures cannot drift from what the reactor
// counted. The reactor package itself does not import Prometheus.
//
// Each family is declared once, in a table that says how a scrape reads
// it; Describe and Collect walk the same tables, so a family cannot be
// described and not collected, or the reverse.
//
// Two reactors in one registry export the same families: register each
// Collector through prometheus.WrapRegistererWith with a label of its own
// (reactor="a"), or the second registration fails as a duplicate.
package reactorprom

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneshot-io/oneshot/reactor"
)

// Collector is a prometheus.Collector over one reactor's counters and its
// listeners'. Its methods are safe from any goroutine.
type Collector struct {
	stats     func() reactor.Stats // constant after New
	completed *prometheus.Desc     // constant: labelled by outcome
	reactor   []family[reactor.Stats]
	listener  []family[reactor.ListenerStats]

	mu        sync.Mutex
	listeners []source // guarded by mu
}

type source struct {
	label string
	stats func() reactor.ListenerStats
}

// family is one metric family whose value a scrape reads from T.
type family[T any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(T) float64
}

func counter[T any](name, help string, value func(T) uint64, labels ...string) family[T] {
	return family[T]{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue,
		func(v T) float64 { return float64(value(v)) }}
}

func gauge[T any](name, help string, value func(T) int64, labels ...string) family[T] {
	return family[T]{prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue,
		func(v T) float64 { return float64(value(v)) }}
}

// New returns a Collector over r's counters.
func New(r *reactor.Reactor) *Collector { return NewFromStats(r.Stats) }

// NewFromStats returns a Collector that reads the reactor counters from
// stats at every scrape (a Reactor's Stats method, or a stand-in in tests).
func NewFromStats(stats func() reactor.Stats) *Collector {
	type (
		r = reactor.Stats
		s = reactor.ListenerStats
	)
	const l = "listener"
	return &Collector{
		stats:     stats,
		completed: prometheus.NewDesc("oneshot_requests_completed_total", "One-shot poll requests completed, by outcome.", []string{"outcome"}, nil),
		reactor: []family[r]{
			counter("oneshot_requests_armed_total", "One-shot poll requests the reactor accepted.", func(v r) uint64 { return v.Armed }),
			gauge("oneshot_requests_outstanding", "One-shot poll requests armed and not yet completed.", func(v r) int64 { return v.Outstanding }),
			counter("oneshot_stale_events_dropped_total", "Kernel completions or events for requests already finished, dropped by their generation tag.", func(v r) uint64 { return v.StaleDropped }),
			counter("oneshot_events_rearmed_total", "Events for the other direction of a shared fd, which re-armed instead of completing.", func(v r) uint64 { return v.Rearmed }),
			counter("oneshot_loop_wakeups_total", "Times another goroutine woke a sleeping event loop.", func(v r) uint64 { return v.Wakeups }),
			counter("oneshot_loop_turns_total", "Event loop iterations (one wait each).", func(v r) uint64 { return v.LoopTurns }),
			counter("oneshot_kernel_enters_total", "Syscalls the event loops made to arm and wait (io_uring_enter, or epoll_ctl and epoll_wait).", func(v r) uint64 { return v.KernelEnters }),
			counter("oneshot_events_reaped_total", "Events harvested from the backend.", func(v r) uint64 { return v.EventsReaped }),
			counter("oneshot_gathered_total", "Event-loop looks that asked the kernel to wait, briefly, for a batch of completions (KernelWait loops on io_uring, under load); some found it posted already.", func(v r) uint64 { return v.Gathered }),
			gauge("oneshot_backend_armed", "Polls the backend (io_uring or epoll) still holds armed, late completions owed included.", func(v r) int64 { return v.BackendArmed }),
			counter("oneshot_recv_chunks_total", "Chunks connections received through the io_uring ring.", func(v r) uint64 { return v.Received }),
			counter("oneshot_recv_no_buffers_total", "Connection receives the kernel ended because every receive buffer was in use (each armed again at once).", func(v r) uint64 { return v.RecvNoBuffers }),
			counter("oneshot_sent_in_place_total", "Receive buffers writes sent from instead of copying (ListenConfig.SendInPlace).", func(v r) uint64 { return v.SentInPlace }),
			gauge("oneshot_sent_in_place_held", "Receive buffers sends still hold (ListenConfig.SendInPlace): receives cannot use them meanwhile.", func(v r) int64 { return v.InPlaceHeld }),
			gauge("oneshot_timers", "Deadlines on the event loops' timer heaps (request deadlines, and Conns' write timeouts and close bounds; idle and read timeouts are each loop's one sweep, not counted), and listening sockets waiting out an accept backoff.", func(v r) int64 { return v.Timers }),
		},
		listener: []family[s]{
			counter("oneshot_listener_connections_accepted_total", "Connections accepted and served.", func(v s) uint64 { return v.Accepted }, l),
			counter("oneshot_listener_connections_refused_total", "Connections closed at once because MaxConns were open.", func(v s) uint64 { return v.Refused }, l),
			gauge("oneshot_listener_connections_active", "Connections open now.", func(v s) int64 { return v.Active }, l),
			gauge("oneshot_listener_connections_paused", "Connections not read now because MaxPending bytes wait to be sent to them.", func(v s) int64 { return v.Paused }, l),
			counter("oneshot_listener_connections_closed_total", "Connections closed.", func(v s) uint64 { return v.Closed }, l),
			counter("oneshot_listener_received_bytes_total", "Bytes read from connections.", func(v s) uint64 { return v.BytesIn }, l),
			counter("oneshot_listener_sent_bytes_total", "Bytes written to connections.", func(v s) uint64 { return v.BytesOut }, l),
			counter("oneshot_listener_discarded_bytes_total", "Bytes read from closing connections and dropped while they lingered.", func(v s) uint64 { return v.Discarded }, l),
			gauge("oneshot_listener_output_buffer_bytes", "Memory holding the connections' pending output.", func(v s) int64 { return v.OutBuffer }, l),
			counter("oneshot_listener_accept_errors_total", "accept4 failures other than EAGAIN and ECONNABORTED.", func(v s) uint64 { return v.AcceptErrors }, l),
			counter("oneshot_listener_accept_backoffs_total", "Times accepting paused because descriptors or memory ran out.", func(v s) uint64 { return v.Backoffs }, l),
		},
	}
}

// AddListener adds ln's counters under the label listener=name. A name
// already added is taken over by ln (a listener reopened under its old
// name: two series under one label would fail every scrape).
func (c *Collector) AddListener(name string, ln *reactor.Listener) {
	c.AddListenerStats(name, ln.Stats)
}

// AddNetListener adds the counters of ln, a net.Listener on the reactor
// (what net/http serves on), under the label listener=name, in the same
// families as a Listener's; those of a Listener's loop alone (paused,
// output buffer, discarded, backoffs, refused) stay 0 for it (see
// NetListener.Stats). A name already added is taken over by ln.
func (c *Collector) AddNetListener(name string, ln *reactor.NetListener) {
	c.AddListenerStats(name, ln.Stats)
}

// AddListenerStats is AddListener from a stats function.
func (c *Collector) AddListenerStats(name string, stats func() reactor.ListenerStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.listeners {
		if c.listeners[i].label == name {
			c.listeners[i].stats = stats
			return
		}
	}
	c.listeners = append(c.listeners, source{name, stats})
}

// RemoveListener stops exporting the listener added as name, and drops the
// Collector's reference to it; a name not added is ignored.
func (c *Collector) RemoveListener(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners = slices.DeleteFunc(c.listeners, func(s source) bool { return s.label == name })
}

// Describe sends every family's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.completed
	for _, f := range c.reactor {
		ch <- f.desc
	}
	for _, f := range c.listener {
		ch <- f.desc
	}
}

// Collect reads the counters now and sends one series per family (per
// listener for the listener families).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	collect(ch, c.reactor, st)
	for _, o := range [...]struct {
		name string
		n    uint64
	}{{"ready", st.CompletedReady}, {"error", st.CompletedError}, {"canceled", st.CompletedCancel}, {"closed", st.CompletedClosed}} {
		ch <- prometheus.MustNewConstMetric(c.completed, prometheus.CounterValue, float64(o.n), o.name)
	}
	c.mu.Lock()
	ls := c.listeners
	c.mu.Unlock()
	for _, l := range ls {
		collect(ch, c.listener, l.stats(), l.label)
	}
}

func collect[T any](ch chan<- prometheus.Metric, fams []family[T], v T, labels ...string) {
	for _, f := range fams {
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, f.value(v), labels...)
	}
}
