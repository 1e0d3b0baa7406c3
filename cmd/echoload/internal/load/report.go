//go:build linux

package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what one Run measured. Latencies are in microseconds; rates
// are per second of the measured phase; MB is 10^6 bytes echoed (one
// direction).
type Report struct {
	Config         Config    `json:"config"`
	Started        time.Time `json:"started"`
	Connected      int       `json:"connected"`
	ConnectSeconds float64   `json:"connect_seconds"`
	Interrupted    bool      `json:"interrupted"`

	// Messages is the measured messages echoed and checked; Bytes is
	// Messages*Size.
	Messages       int64   `json:"messages"`
	Bytes          int64   `json:"bytes"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	MsgsPerSec     float64 `json:"msgs_per_sec"`
	MBPerSec       float64 `json:"mb_per_sec"`
	Latency        Latency `json:"latency_us"`
	// SendLag, with Rate only, is how late messages were written after
	// their intended send time: client timer slack (Go timers wake on
	// millisecond ticks when the process is idle), or a full pipeline
	// window or socket buffer behind a slow server. Latency includes it,
	// as open-loop latency must.
	SendLag *SendLag `json:"send_lag_us,omitempty"`
	// BelowRate, with Rate, reports that fewer than 95% of the intended
	// messages per second were echoed: the server or the client could not
	// keep up, and the latencies measure the growing backlog.
	BelowRate bool `json:"below_rate,omitempty"`

	// Errors counts errors by kind; every kind is present.
	Errors     map[Kind]int64 `json:"errors"`
	ErrorTotal int64          `json:"error_total"`
	FirstError string         `json:"first_error,omitempty"`

	// CPU is nil when the run ended before its measured phase began.
	CPU *CPU `json:"cpu,omitempty"`

	hist *hdrhistogram.Histogram // nanoseconds
}

// Latency summarizes the measured messages' latencies, in microseconds.
type Latency struct {
	Min    float64 `json:"min"`
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stddev"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	P999   float64 `json:"p99_9"`
	Max    float64 `json:"max"`
}

// SendLag summarizes open-loop send lag, in microseconds.
type SendLag struct {
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

// CPU is CPU time over the measured phase (plus its drain).
type CPU struct {
	ClientSeconds  float64 `json:"client_seconds"`
	ClientUSPerMsg float64 `json:"client_us_per_msg"`
	// Server figures are present when Config.ServerPID was set and its
	// /proc entry was readable at both ends; ServerError says why not.
	ServerSeconds  *float64 `json:"server_seconds,omitempty"`
	ServerUSPerMsg *float64 `json:"server_us_per_msg,omitempty"`
	// ServerUserUSPerMsg is the part of ServerUSPerMsg spent in user mode
	// (utime): what a server's own code and runtime cost, the rest being
	// the kernel's.
	ServerUserUSPerMsg *float64 `json:"server_user_us_per_msg,omitempty"`
	ServerError        string   `json:"server_error,omitempty"`
	// ServerSwitchesPerMsg is the server threads' context switches per
	// message: how often it slept and woke (or was preempted) per echo.
	ServerSwitchesPerMsg *float64 `json:"server_ctx_switches_per_msg,omitempty"`
}

// Failed reports whether the run saw any error or was interrupted.
func (r *Report) Failed() bool { return r.ErrorTotal > 0 || r.Interrupted }

func (r *Report) fill(e *engine, conns []*conn) {
	r.hist = hdrhistogram.New(histMin, histMax, histDigit)
	for i := range e.shards {
		r.hist.Merge(e.shards[i].h)
	}
	var last int64
	var lag lagStats
	for _, c := range conns {
		r.Messages += c.msgs.Load()
		last = max(last, c.lastDone)
		lag.merge(c.lag)
	}
	if e.rate && lag.n > 0 {
		r.SendLag = &SendLag{Mean: float64(lag.sum) / float64(lag.n) / 1e3, Max: float64(lag.max) / 1e3}
	}
	r.Bytes = r.Messages * int64(e.cfg.Size)
	if r.Messages > 0 && last > e.warmupEnd {
		el := time.Duration(last - e.warmupEnd)
		r.ElapsedSeconds = el.Seconds()
		r.MsgsPerSec = float64(r.Messages) / el.Seconds()
		r.MBPerSec = float64(r.Bytes) / el.Seconds() / 1e6
	}
	r.BelowRate = e.rate && r.Messages > 0 && r.MsgsPerSec < 0.95*e.cfg.Rate
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	if r.hist.TotalCount() > 0 {
		r.Latency = Latency{
			Min: us(r.hist.Min()), Mean: r.hist.Mean() / 1e3, StdDev: r.hist.StdDev() / 1e3,
			P50: us(r.hist.ValueAtQuantile(50)), P90: us(r.hist.ValueAtQuantile(90)),
			P99: us(r.hist.ValueAtQuantile(99)), P999: us(r.hist.ValueAtQuantile(99.9)),
			Max: us(r.hist.Max()),
		}
	}
	r.Errors = map[Kind]int64{}
	e.mu.Lock()
	for _, k := range Kinds {
		r.Errors[k] = e.errs[k]
		r.ErrorTotal += e.errs[k]
	}
	r.FirstError = e.firstErr
	e.mu.Unlock()
}

func (r *Report) setCPU(begin, finish cpuSample) {
	if !begin.ok || !finish.ok {
		return
	}
	per := func(d time.Duration) float64 {
		if r.Messages == 0 {
			return 0
		}
		return float64(d.Microseconds()) / float64(r.Messages)
	}
	c := &CPU{ClientSeconds: (finish.client - begin.client).Seconds()}
	c.ClientUSPerMsg = per(finish.client - begin.client)
	if r.Config.ServerPID > 0 {
		if err := begin.serverErr; err != nil {
			c.ServerError = err.Error()
		} else if err := finish.serverErr; err != nil {
			c.ServerError = err.Error()
		} else {
			s, p := (finish.server - begin.server).Seconds(), per(finish.server-begin.server)
			u := per(finish.serverUsr - begin.serverUsr)
			c.ServerSeconds, c.ServerUSPerMsg, c.ServerUserUSPerMsg = &s, &p, &u
			if r.Messages > 0 {
				cs := float64(finish.serverCS-begin.serverCS) / float64(r.Messages)
				c.ServerSwitchesPerMsg = &cs
			}
		}
	}
	r.CPU = c
}

// WriteJSON writes r as one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHGRM writes the latency distribution in HdrHistogram's percentile
// text format (.hgrm), in microseconds, as HdrHistogram plotters read it.
func (r *Report) WriteHGRM(w io.Writer) error {
	h := r.hist
	if h == nil {
		h = hdrhistogram.New(histMin, histMax, histDigit)
	}
	_, err := h.PercentilesPrint(w, 5, 1e3)
	return err
}

// dur formats a latency of us microseconds for people: in µs with one
// decimal below 10 ms ("812.4us"), in ms from there ("2149.6ms", not
// "2149580.8us"), so that a figure keeps at most five digits before its
// point and its unit says which it is.
func dur(us float64) string {
	if us < 10_000 {
		return fmt.Sprintf("%.1fus", us)
	}
	return fmt.Sprintf("%.1fms", us/1e3)
}

// WriteSummary writes the human-readable summary. Latencies carry their
// unit (see dur); the JSON and .hgrm outputs stay in microseconds.
func (r *Report) WriteSummary(w io.Writer) error {
	c := r.Config
	mode := "closed loop"
	if c.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g msgs/s", c.Rate)
	}
	phase := fmt.Sprintf("duration %v", c.Duration)
	if c.Messages > 0 {
		phase = fmt.Sprintf("%d messages", c.Messages)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "echoload %s %s: %d conns x %d B, pipeline %d, %s, warmup %v, %s\n",
		c.Network, c.Address, c.Conns, c.Size, c.Pipeline, phase, c.Warmup, mode)
	fmt.Fprintf(&b, "  connected   %d/%d in %.3fs\n", r.Connected, c.Conns, r.ConnectSeconds)
	fmt.Fprintf(&b, "  echoed      %d msgs in %.3fs: %.0f msgs/s, %.2f MB/s\n",
		r.Messages, r.ElapsedSeconds, r.MsgsPerSec, r.MBPerSec)
	l := r.Latency
	fmt.Fprintf(&b, "  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
		dur(l.P50), dur(l.P90), dur(l.P99), dur(l.P999), dur(l.Max), dur(l.Mean))
	if r.SendLag != nil {
		fmt.Fprintf(&b, "  send lag    mean %s  max %s (included in latency)\n", dur(r.SendLag.Mean), dur(r.SendLag.Max))
	}
	if r.BelowRate {
		fmt.Fprintf(&b, "  BELOW RATE  %.0f of %g msgs/s: the server or this client is saturated; latencies include the backlog\n", r.MsgsPerSec, c.Rate)
	}
	if r.CPU != nil {
		fmt.Fprintf(&b, "  cpu us/msg  client %.2f", r.CPU.ClientUSPerMsg)
		switch {
		case r.CPU.ServerUSPerMsg != nil:
			fmt.Fprintf(&b, "  server %.2f (pid %d)", *r.CPU.ServerUSPerMsg, c.ServerPID)
			if u := r.CPU.ServerUserUSPerMsg; u != nil {
				fmt.Fprintf(&b, ", %.2f of it in user mode", *u)
			}
			if cs := r.CPU.ServerSwitchesPerMsg; cs != nil {
				fmt.Fprintf(&b, ", %.3f server context switches/msg", *cs)
			}
		case r.CPU.ServerError != "":
			fmt.Fprintf(&b, "  server unknown: %s", r.CPU.ServerError)
		}
		b.WriteString("\n")
	}
	if r.ErrorTotal == 0 {
		b.WriteString("  errors      none\n")
	} else {
		var parts []string
		for _, k := range Kinds {
			if n := r.Errors[k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, n))
			}
		}
		fmt.Fprintf(&b, "  errors      %d (%s)\n  first error %s\n", r.ErrorTotal, strings.Join(parts, ", "), r.FirstError)
	}
	if r.Interrupted {
		b.WriteString("  interrupted before the end\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
