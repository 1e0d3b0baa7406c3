//go:build linux

package load

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// pacerQuantum is the pacer's shortest sleep.
const pacerQuantum = int64(100 * time.Microsecond)

// pacer wakes open-loop writers at their messages' intended send times.
//
// A writer sleeping on a time.Timer sends up to ~1 ms late whenever the
// process is otherwise idle: the runtime then blocks in epoll_wait, whose
// timeout is in whole milliseconds, and that lateness lands in every
// open-loop latency. The pacer arms a timerfd (an hrtimer, precise to
// microseconds) for the next due message instead; the fd becoming readable
// wakes the netpoller at once.
//
// Message j of the run's global schedule is message j/Conns of connection
// j%Conns, due at engine.intended. When it is due the pacer drops a token
// in that connection's tick channel (capacity 1, never blocking). A writer
// takes a token and re-checks the time, so a token left over from a message
// it sent late only makes it look again: no wakeup is lost, because the
// pacer only ever sends once the message is due.
type pacer struct {
	e     *engine
	f     *os.File        // the timerfd, non-blocking, read through the netpoller
	fd    int             // f's descriptor, kept so run never calls f.Fd() while close runs. Constant.
	ticks []chan struct{} // by connection id; nil where the dial failed. Constant.
	done  chan struct{}   // closed when run returns
	stop  atomic.Bool     // set by close: run, even behind schedule, returns
}

// newPacer makes a pacer for conns, giving each its tick channel.
func newPacer(e *engine, conns []*conn) (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	p := &pacer{e: e, f: os.NewFile(uintptr(fd), "echoload-pacer"), fd: fd,
		ticks: make([]chan struct{}, e.cfg.Conns), done: make(chan struct{})}
	for _, c := range conns {
		c.tick = make(chan struct{}, 1)
		p.ticks[c.id] = c.tick
	}
	return p, nil
}

// run releases messages as they fall due until the phase ends or close.
func (p *pacer) run() {
	defer close(p.done)
	e := p.e
	n := uint64(e.cfg.Conns)
	var buf [8]byte
	for j := uint64(0); ; {
		id, seq := int(j%n), j/n
		t, now := e.intended(id, seq), e.now()
		// Behind schedule the pacer never sleeps, so neither close's read
		// deadline nor the schedule's end (t, far behind now) would stop
		// it: a rate above what the machine sends kept it spinning past
		// --duration, its context canceled.
		if t >= e.end || now >= e.end || p.stop.Load() {
			return
		}
		if d := t - now; d > 0 {
			// Sleep at least pacerQuantum: at high rates one wakeup then
			// releases several messages, each at most a quantum late,
			// instead of paying three syscalls per message.
			d = max(d, pacerQuantum)
			spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d)}
			if err := unix.TimerfdSettime(p.fd, 0, &spec, nil); err != nil {
				panic(fmt.Sprintf("echoload: timerfd_settime(%v): %v", time.Duration(d), err))
			}
			if _, err := p.f.Read(buf[:]); err != nil {
				return // the read deadline set by close
			}
			continue
		}
		if ch := p.ticks[id]; ch != nil {
			select {
			case ch <- struct{}{}:
			default: // a token is already waiting there
			}
		}
		j++
	}
}

// close stops run, waits for it, then closes the timerfd. The descriptor
// is closed only after run returned: closed earlier, its number could be
// reused and run's timerfd_settime would reach another file.
func (p *pacer) close() {
	p.stop.Store(true)
	// A deadline in the past fails the blocked Read and every later one.
	if err := p.f.SetReadDeadline(time.Unix(1, 0)); err != nil {
		panic(fmt.Sprintf("echoload: the pacer's timerfd is not pollable: %v", err))
	}
	<-p.done
	p.f.Close()
}
