package main

import (
	"strings"
	"syscall"
	"testing"
)

// brokenPipe is a writer whose reader is gone.
type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestLogSinkDropsAndCounts: a log line that cannot be written is dropped
// and counted, and logging goes on without an error that zap would try to
// report on the same broken stream.
func TestLogSinkDropsAndCounts(t *testing.T) {
	sink := &logSink{w: brokenPipe{}}
	log, err := newLogger(sink, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		log.Info("into the void")
	}
	if got := sink.dropped.Load(); got != 3 {
		t.Errorf("dropped = %d after 3 lines into a broken pipe, want 3", got)
	}
	var b strings.Builder
	sink = &logSink{w: &b}
	if n, err := sink.Write([]byte("line\n")); n != 5 || err != nil || sink.dropped.Load() != 0 || b.String() != "line\n" {
		t.Errorf("Write to a working writer = %d, %v (dropped %d, wrote %q)", n, err, sink.dropped.Load(), b.String())
	}
}
