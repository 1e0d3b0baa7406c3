//go:build linux

package load

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Kind names a class of error. Every kind counts against the run: Report
// keeps a count per kind and echoload exits non-zero if any is non-zero.
type Kind string

const (
	// KindMismatch: an echoed byte differs from the byte sent.
	KindMismatch Kind = "mismatch"
	// KindShortRead: the server ended the stream (EOF) or sent a datagram
	// before echoing everything that was sent.
	KindShortRead Kind = "short_read"
	// KindReset: the connection was reset (ECONNRESET, EPIPE, ECONNABORTED).
	KindReset Kind = "reset"
	// KindTimeout: a dial, write or echo took longer than Config.Timeout.
	KindTimeout Kind = "timeout"
	// KindConnect: a connection could not be opened.
	KindConnect Kind = "connect"
	// KindOther: any other I/O error.
	KindOther Kind = "other"
)

// Kinds lists every Kind in report order.
var Kinds = []Kind{KindMismatch, KindShortRead, KindReset, KindTimeout, KindConnect, KindOther}

// classify maps an I/O error to its Kind.
func classify(err error) Kind {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindShortRead
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED):
		return KindReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	}
	return KindOther
}
