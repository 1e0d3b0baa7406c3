//go:build linux

package reactor

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

// TestAcceptStreaksLogged: every streak of accept backoffs is logged, at
// most one warning every acceptWarnEvery, with its end, including one that
// began within acceptWarnEvery of the last warning (descriptors run out in
// flaps: one close, one accept, EMFILE again) once that much has passed.
// The clock is moved by moving warnedAt back.
func TestAcceptStreaksLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	r := &Reactor{cfg: Config{Logger: zap.New(core)}}
	s := &lsock{ln: &Listener{r: r}, l: &loop{r: r}}
	count := func(what string) int { return logs.FilterMessageSnippet(what).Len() }

	s.backOff(unix.EMFILE)
	s.backOff(unix.EMFILE)
	if n := count("accepting failed"); n != 1 {
		t.Fatalf("a streak of 2 backoffs: %d warnings, want 1", n)
	}
	s.accepting()
	if n := count("accepting again"); n != 1 {
		t.Fatalf("the streak's end: %d lines, want 1", n)
	}
	s.backOff(unix.EMFILE) // a flap: a new streak at once
	if n := count("accepting failed"); n != 1 {
		t.Fatalf("a new streak within %v: %d warnings, want still 1", acceptWarnEvery, n)
	}
	s.warnedAt -= int64(acceptWarnEvery + time.Second) // that much later, still failing
	s.backOff(unix.EMFILE)
	if n := count("accepting failed"); n != 2 {
		t.Fatalf("the flapped streak %v on: %d warnings, want 2", acceptWarnEvery, n)
	}
	s.accepting()
	if n := count("accepting again"); n != 2 {
		t.Fatalf("the flapped streak's end: %d lines, want 2", n)
	}
}
