//go:build linux && amd64

package poller

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestLedgerRecordSizes pins what the ledger keeps per armed tag and per fd,
// which every idle connection pays (the reactor package doc's table of an
// idle Conn's cost gives these sizes).
func TestLedgerRecordSizes(t *testing.T) {
	for _, p := range []struct {
		name      string
		got, want uintptr
	}{
		{"tagRec", unsafe.Sizeof(tagRec{}), 16},
		{"tagLinks", unsafe.Sizeof(tagLinks{}), 8},
		{"fdTags", unsafe.Sizeof(fdTags{}), 8},
		{"fdRec", unsafe.Sizeof(fdRec{}), 24},
		{"TagRecord", unsafe.Sizeof(TagRecord{}), 2},
		{"epollReg", unsafe.Sizeof(epollReg{}), 16},
	} {
		if p.got != p.want {
			t.Errorf("unsafe.Sizeof(%s) = %d, want %d: update the reactor package doc's table", p.name, p.got, p.want)
		}
	}
}

// TestEvBitsRoundTrip: every mask a registration keeps (the interest bits,
// what epoll reports, EPOLLET) comes back from its byte unchanged.
func TestEvBitsRoundTrip(t *testing.T) {
	bits := []uint32{In, Pri, Out, Err, Hup, RdHup, unix.EPOLLET}
	for set := range 1 << len(bits) {
		var m uint32
		for i, b := range bits {
			if set&(1<<i) != 0 {
				m |= b
			}
		}
		if got := packEv(m).mask(); got != m {
			t.Fatalf("packEv(%#x).mask() = %#x", m, got)
		}
	}
}
