//go:build linux && amd64

package reactor

import (
	"testing"
	"unsafe"

	"github.com/oneshot-io/oneshot/cancel"
)

// TestIdleConnParts pins the sizes the package doc's table of an idle
// Conn's cost gives, so that a field added to the Conn or to a request's
// payload shows up here and in the doc, not only in make idle-rss. The
// Conn's 128 is a malloc size class: one byte more costs 16.
func TestIdleConnParts(t *testing.T) {
	for _, p := range []struct {
		name      string
		got, want uintptr
	}{
		{"Conn", unsafe.Sizeof(Conn{}), 128},
		{"cancel.Slot[reqData]", unsafe.Sizeof(cancel.Slot[reqData]{}), 64},
		{"its place in l.served", unsafe.Sizeof(*new(loop).served.At(0)), 16},
		{"peerAddr (in the Conn)", unsafe.Sizeof(peerAddr{}), 20},
		{"timerEntry", unsafe.Sizeof(timerEntry{}), 16},
	} {
		if p.got != p.want {
			t.Errorf("unsafe.Sizeof(%s) = %d, the package doc says %d: update the doc's table (and mind the size class)", p.name, p.got, p.want)
		}
	}
}

// TestConnHotLine: what every message touches of its Conn lies in the
// Conn's first 64 bytes (a 128-byte Conn is 128-aligned, so that is one
// cache line): at 1,000 connections each Conn is out of the caches by its
// next message, and a field of the path on the second line is a second
// miss a message.
func TestConnHotLine(t *testing.T) {
	var c Conn
	for _, f := range []struct {
		name      string
		off, size uintptr
	}{
		{"l", unsafe.Offsetof(c.l), unsafe.Sizeof(c.l)},
		{"ln", unsafe.Offsetof(c.ln), unsafe.Sizeof(c.ln)},
		{"mu", unsafe.Offsetof(c.mu), unsafe.Sizeof(c.mu)},
		{"out", unsafe.Offsetof(c.out), unsafe.Sizeof(c.out)},
		{"st", unsafe.Offsetof(c.st), unsafe.Sizeof(c.st)},
		{"lastActive", unsafe.Offsetof(c.lastActive), unsafe.Sizeof(c.lastActive)},
		{"wr", unsafe.Offsetof(c.wr), unsafe.Sizeof(c.wr)},
		{"fd", unsafe.Offsetof(c.fd), unsafe.Sizeof(c.fd)},
	} {
		if f.off+f.size > 64 {
			t.Errorf("Conn.%s at bytes [%d, %d): past the first cache line", f.name, f.off, f.off+f.size)
		}
	}
}
