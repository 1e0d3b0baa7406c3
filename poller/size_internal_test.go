//go:build linux && amd64

package poller

import (
	"testing"
	"unsafe"
)

// TestLedgerRecordSizes pins what the ledger keeps per armed tag and per fd,
// which every idle connection pays (the reactor package doc's table of an
// idle Conn's cost gives these sizes).
func TestLedgerRecordSizes(t *testing.T) {
	for _, p := range []struct {
		name      string
		got, want uintptr
	}{
		{"tagRec", unsafe.Sizeof(tagRec{}), 32},
		{"fdTags", unsafe.Sizeof(fdTags{}), 8},
	} {
		if p.got != p.want {
			t.Errorf("unsafe.Sizeof(%s) = %d, want %d: update the reactor package doc's table", p.name, p.got, p.want)
		}
	}
}
