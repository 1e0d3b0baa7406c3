package reactorprom_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/oneshot-io/oneshot/reactor"
	"github.com/oneshot-io/oneshot/reactor/reactorprom"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type echo struct{}

func (echo) OnOpen(*reactor.Conn)             {}
func (echo) OnData(c *reactor.Conn, b []byte) { c.Write(b) }
func (echo) OnClose(*reactor.Conn, error)     {}

// TestCollectorReadsLiveCounters: the families carry what the reactor and
// the listener counted, read at scrape time, and Describe names exactly the
// families Collect sends (a registry with pedantic checks refuses either
// mismatch).
func TestCollectorReadsLiveCounters(t *testing.T) {
	r, err := reactor.New(reactor.Config{Backend: reactor.BackendEpoll, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln, err := r.Listen("tcp", "127.0.0.1:0", echo{}, reactor.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	col := reactorprom.New(r)
	col.AddListener("echo", ln)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ln.Stats().Closed != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}

	want := `
# HELP oneshot_listener_connections_accepted_total Connections accepted and served.
# TYPE oneshot_listener_connections_accepted_total counter
oneshot_listener_connections_accepted_total{listener="echo"} 1
# HELP oneshot_listener_connections_closed_total Connections closed.
# TYPE oneshot_listener_connections_closed_total counter
oneshot_listener_connections_closed_total{listener="echo"} 1
# HELP oneshot_listener_received_bytes_total Bytes read from connections.
# TYPE oneshot_listener_received_bytes_total counter
oneshot_listener_received_bytes_total{listener="echo"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"oneshot_listener_connections_accepted_total", "oneshot_listener_connections_closed_total",
		"oneshot_listener_received_bytes_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += "/" + lp.GetValue()
			}
			got[name] = v
		}
	}
	st := r.Stats()
	if got["oneshot_requests_armed_total"] < 1 || got["oneshot_requests_armed_total"] > float64(st.Armed) {
		t.Errorf("oneshot_requests_armed_total = %v, Stats().Armed now %d", got["oneshot_requests_armed_total"], st.Armed)
	}
	for _, o := range []string{"ready", "error", "canceled", "closed"} {
		if _, ok := got["oneshot_requests_completed_total/"+o]; !ok {
			t.Errorf("no oneshot_requests_completed_total series for outcome %q", o)
		}
	}
	if n := len(mfs); n != 27 {
		t.Errorf("%d families gathered, want 27 (16 reactor, 11 listener)", n)
	}
}

// TestCollectorFromStats reads whatever the stats function returns, so a
// service can label or combine reactors as it likes.
func TestCollectorFromStats(t *testing.T) {
	col := reactorprom.NewFromStats(func() reactor.Stats {
		return reactor.Stats{Armed: 7, CompletedReady: 5, CompletedCancel: 2, Outstanding: 0, KernelEnters: 11, SentInPlace: 9, InPlaceHeld: 2}
	})
	col.AddListenerStats("a", func() reactor.ListenerStats { return reactor.ListenerStats{Active: 3, OutBuffer: 4096} })
	want := `
# HELP oneshot_requests_armed_total One-shot poll requests the reactor accepted.
# TYPE oneshot_requests_armed_total counter
oneshot_requests_armed_total 7
# HELP oneshot_requests_completed_total One-shot poll requests completed, by outcome.
# TYPE oneshot_requests_completed_total counter
oneshot_requests_completed_total{outcome="canceled"} 2
oneshot_requests_completed_total{outcome="closed"} 0
oneshot_requests_completed_total{outcome="error"} 0
oneshot_requests_completed_total{outcome="ready"} 5
# HELP oneshot_sent_in_place_total Receive buffers writes sent from instead of copying (ListenConfig.SendInPlace).
# TYPE oneshot_sent_in_place_total counter
oneshot_sent_in_place_total 9
# HELP oneshot_sent_in_place_held Receive buffers sends still hold (ListenConfig.SendInPlace): receives cannot use them meanwhile.
# TYPE oneshot_sent_in_place_held gauge
oneshot_sent_in_place_held 2
# HELP oneshot_listener_connections_active Connections open now.
# TYPE oneshot_listener_connections_active gauge
oneshot_listener_connections_active{listener="a"} 3
# HELP oneshot_listener_output_buffer_bytes Memory holding the connections' pending output.
# TYPE oneshot_listener_output_buffer_bytes gauge
oneshot_listener_output_buffer_bytes{listener="a"} 4096
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want),
		"oneshot_requests_armed_total", "oneshot_requests_completed_total", "oneshot_sent_in_place_total", "oneshot_sent_in_place_held",
		"oneshot_listener_connections_active", "oneshot_listener_output_buffer_bytes"); err != nil {
		t.Fatal(err)
	}
}

// TestListenerReAddedAndRemoved: a listener added again under its name (a
// service that reopened it) takes the name over, where two series under
// one label failed every scrape for good, and RemoveListener drops its
// series.
func TestListenerReAddedAndRemoved(t *testing.T) {
	col := reactorprom.NewFromStats(func() reactor.Stats { return reactor.Stats{} })
	col.AddListenerStats("http", func() reactor.ListenerStats { return reactor.ListenerStats{Active: 1} })
	col.AddListenerStats("udp", func() reactor.ListenerStats { return reactor.ListenerStats{Active: 5} })
	col.AddListenerStats("http", func() reactor.ListenerStats { return reactor.ListenerStats{Active: 2} })
	want := func(series string) string {
		return "# HELP oneshot_listener_connections_active Connections open now.\n" +
			"# TYPE oneshot_listener_connections_active gauge\n" + series
	}
	if err := testutil.CollectAndCompare(col, strings.NewReader(want(
		"oneshot_listener_connections_active{listener=\"http\"} 2\noneshot_listener_connections_active{listener=\"udp\"} 5\n")),
		"oneshot_listener_connections_active"); err != nil {
		t.Fatalf("after re-adding http: %v", err)
	}
	col.RemoveListener("http")
	col.RemoveListener("nosuch")
	if err := testutil.CollectAndCompare(col, strings.NewReader(want(
		"oneshot_listener_connections_active{listener=\"udp\"} 5\n")),
		"oneshot_listener_connections_active"); err != nil {
		t.Fatalf("after removing http: %v", err)
	}
}

// TestCollectorNetListener: a NetListener net/http serves on exports its
// connections and bytes in the listener families, beside a Listener's.
func TestCollectorNetListener(t *testing.T) {
	r, err := reactor.New(reactor.Config{Backend: reactor.BackendEpoll, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	nl, err := r.NetListenWith("tcp", "127.0.0.1:0", reactor.NetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello")
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(nl) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	col := reactorprom.New(r)
	col.AddNetListener("http", nl)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)

	// One keep-alive connection, two requests, then closed by the client.
	tr := &http.Transport{}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 2 {
		resp, err := cl.Get("http://" + nl.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for nl.Stats().Closed != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := nl.Stats()
	if st.Accepted != 1 || st.Active != 0 || st.Closed != 1 || st.BytesIn == 0 || st.BytesOut == 0 {
		t.Fatalf("NetListener.Stats = %+v, want one connection accepted and closed, bytes both ways", st)
	}
	want := fmt.Sprintf(`
# HELP oneshot_listener_connections_accepted_total Connections accepted and served.
# TYPE oneshot_listener_connections_accepted_total counter
oneshot_listener_connections_accepted_total{listener="http"} 1
# HELP oneshot_listener_connections_active Connections open now.
# TYPE oneshot_listener_connections_active gauge
oneshot_listener_connections_active{listener="http"} 0
# HELP oneshot_listener_received_bytes_total Bytes read from connections.
# TYPE oneshot_listener_received_bytes_total counter
oneshot_listener_received_bytes_total{listener="http"} %d
# HELP oneshot_listener_sent_bytes_total Bytes written to connections.
# TYPE oneshot_listener_sent_bytes_total counter
oneshot_listener_sent_bytes_total{listener="http"} %d
`, st.BytesIn, st.BytesOut)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"oneshot_listener_connections_accepted_total", "oneshot_listener_connections_active",
		"oneshot_listener_received_bytes_total", "oneshot_listener_sent_bytes_total"); err != nil {
		t.Fatal(err)
	}
}
