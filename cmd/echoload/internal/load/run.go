//go:build linux

package load

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in nanoseconds, 3 significant
// digits, up to a minute; a longer one is recorded as a minute.
const (
	histMin   = 1
	histMax   = int64(time.Minute)
	histDigit = 3
	nShards   = 16 // histograms shared by connections, id % nShards
	dialers   = 64 // dials in flight at once during connect
)

// shard is one histogram that several connections record into.
type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram // guarded by mu
}

func (s *shard) record(ns int64) {
	ns = max(ns, histMin)
	ns = min(ns, histMax)
	s.mu.Lock()
	s.h.RecordValue(ns) // cannot fail: ns is clamped to the range
	s.mu.Unlock()
}

// engine is one Run's shared state.
type engine struct {
	cfg       Config    // constant
	base      time.Time // constant once the load starts: time 0
	warmupEnd int64     // constant: ns since base
	end       int64     // constant: ns since base the phase stops; MaxInt64 with Messages
	rate      bool      // constant: open loop
	period    float64   // constant: ns between one connection's messages with Rate

	shards   [nShards]shard
	stop     chan struct{} // closed when ctx ends: stop sending, stop waiting
	stopping atomic.Bool   // set just before stop is closed

	mu       sync.Mutex // guards errs and firstErr
	errs     map[Kind]int64
	firstErr string
}

func (e *engine) now() int64 { return int64(time.Since(e.base)) }

// intended is message seq's send time on connection id with Rate: the
// connections' schedules are staggered evenly within one period.
func (e *engine) intended(id int, seq uint64) int64 {
	return int64((float64(id)/float64(e.cfg.Conns) + float64(seq)) * e.period)
}

func (e *engine) count(kind Kind, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs[kind]++
	if e.firstErr == "" {
		e.firstErr = fmt.Sprintf("%s: %s", kind, detail)
	}
}

func (e *engine) errorTotal() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, v := range e.errs {
		n += v
	}
	return n
}

// Run does the load run cfg describes and returns its report. The error is
// non-nil only when the run could not happen (bad config, no connection);
// errors seen during the run are counted in the report, which the caller
// should check with Report.Failed. Cancelling ctx stops the run early; the
// report then says Interrupted.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	e := &engine{cfg: cfg, stop: make(chan struct{}), errs: map[Kind]int64{}}
	for i := range e.shards {
		e.shards[i].h = hdrhistogram.New(histMin, histMax, histDigit)
	}
	e.warmupEnd = int64(cfg.Warmup)
	e.end = math.MaxInt64
	if cfg.Messages == 0 {
		e.end = int64(cfg.Warmup + cfg.Duration)
	}
	if cfg.Rate > 0 {
		e.rate = true
		e.period = float64(cfg.Conns) * 1e9 / cfg.Rate
	}
	rep := Report{Config: cfg, Started: time.Now()}

	conns, connectTime := e.connect(ctx)
	rep.Connected, rep.ConnectSeconds = len(conns), connectTime.Seconds()
	if len(conns) == 0 {
		rep.fill(e, nil)
		if err := ctx.Err(); err != nil {
			rep.Interrupted = true
			return rep, fmt.Errorf("%w: interrupted while connecting: %w", ErrNoConnections, err)
		}
		return rep, fmt.Errorf("%w: %s", ErrNoConnections, e.firstErr)
	}

	var pc *pacer
	if e.rate {
		// Without a timerfd the writers fall back to runtime timers,
		// which may wake up to ~1 ms late (Report.SendLag shows it).
		pc, _ = newPacer(e, conns)
	}
	e.base = time.Now()
	if pc != nil {
		go pc.run()
		defer pc.close()
	}
	// begin is taken when warmup ends, by a goroutine that gives up if the
	// connections all finish first; finish is taken after it returned.
	var begin, finish cpuSample
	loadDone := make(chan struct{})
	beginTaken := make(chan struct{})
	go func() {
		defer close(beginTaken)
		t := time.NewTimer(cfg.Warmup)
		defer t.Stop()
		select {
		case <-t.C:
			begin = takeCPUSample(cfg.ServerPID)
		case <-loadDone:
		}
	}()
	watchDone := make(chan struct{})
	watchExited := make(chan struct{})
	go func() {
		defer close(watchExited)
		select {
		case <-ctx.Done():
			e.stopping.Store(true)
			close(e.stop)
			for _, c := range conns {
				c.nc.SetDeadline(time.Now()) // wakes every blocked read and write
			}
		case <-watchDone:
		}
	}()
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			e.progress(conns, progressDone)
		}()
	}

	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Pipeline == 1 {
				c.runSync()
			} else {
				c.runPipelined()
			}
		}()
	}
	wg.Wait()
	close(loadDone)
	<-beginTaken
	finish = takeCPUSample(cfg.ServerPID)
	close(progressDone)
	progressWG.Wait()
	close(watchDone)
	<-watchExited
	for _, c := range conns {
		c.nc.Close()
	}
	rep.Interrupted = e.stopping.Load()
	rep.fill(e, conns)
	rep.setCPU(begin, finish)
	return rep, nil
}

// connect dials cfg.Conns connections, at most dialers at once and no faster
// than ConnectRate, and returns those that opened, in id order.
func (e *engine) connect(ctx context.Context) ([]*conn, time.Duration) {
	cfg := e.cfg
	start := time.Now()
	got := make([]*conn, cfg.Conns)
	quota := func(id int) int64 {
		if cfg.Messages == 0 {
			return -1
		}
		q := cfg.Messages / int64(cfg.Conns)
		if int64(id) < cfg.Messages%int64(cfg.Conns) {
			q++
		}
		return q
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	slots := make(chan struct{}, dialers)
	var wg sync.WaitGroup
	for id := 0; id < cfg.Conns; id++ {
		if cfg.ConnectRate > 0 {
			at := start.Add(time.Duration(float64(id) / cfg.ConnectRate * 1e9))
			if w := time.Until(at); w > 0 {
				t := time.NewTimer(w)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			break
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			nc, err := d.DialContext(ctx, cfg.Network, cfg.Address)
			if err != nil {
				if ctx.Err() == nil {
					e.count(KindConnect, fmt.Sprintf("conn %d: %v", id, err))
				}
				return
			}
			got[id] = newConn(e, id, nc, quota(id))
		}()
	}
	wg.Wait()
	conns := got[:0]
	for _, c := range got {
		if c != nil {
			conns = append(conns, c)
		}
	}
	return conns, time.Since(start)
}

// progress calls cfg.Progress every interval until done is closed.
func (e *engine) progress(conns []*conn, done <-chan struct{}) {
	tk := time.NewTicker(e.cfg.ProgressInterval)
	defer tk.Stop()
	var last int64
	lastAt := time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-tk.C:
			var n int64
			for _, c := range conns {
				n += c.msgs.Load()
			}
			el := time.Duration(e.now())
			e.cfg.Progress(Progress{
				Elapsed:  el,
				Warmup:   int64(el) < e.warmupEnd,
				Messages: n,
				PerSec:   float64(n-last) / now.Sub(lastAt).Seconds(),
				Errors:   e.errorTotal(),
			})
			last, lastAt = n, now
		}
	}
}
