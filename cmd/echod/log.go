//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// newLogger returns a zap logger writing to w in the given format ("json" or
// "console") at level and above. Both values were validated by parseFlags.
func newLogger(w io.Writer, format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "ts"
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		ec.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		panic(fmt.Sprintf("echod: log format %q got past flag validation", format))
	}
	// Lock makes concurrent writes from the loops whole lines; zapcore.Lock
	// needs a WriteSyncer, which AddSync adapts w into.
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

// logSink is where echod's log lines go: stderr, wrapped. A line it cannot
// write (a pipe whose reader is gone: EPIPE; a full disk) is dropped and
// counted, and logging goes on: a daemon does not stop serving, or fail its
// callers, because its log reader went away. Write never fails, so zap does
// not try to report the failure on the same broken stream.
type logSink struct {
	w       io.Writer     // constant
	dropped atomic.Uint64 // lines (writes) that failed
}

func (s *logSink) Write(p []byte) (int, error) {
	if _, err := s.w.Write(p); err != nil {
		s.dropped.Add(1)
	}
	return len(p), nil
}

// isTerminal reports whether w is a terminal, where people read the console
// format more easily than JSON.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
