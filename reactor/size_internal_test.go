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
// Conn's 144 is a malloc size class: one byte more costs 16.
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
