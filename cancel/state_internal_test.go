package cancel

import (
	"strings"
	"testing"
)

// TestPackRefusesOutOfRange: pack panics, naming the field, on a value its
// field cannot hold or that its enumeration does not have (phase 6 and
// outcome 5 fit their 3 bits but name nothing), and packs the largest legal
// values without touching the neighbouring fields.
func TestPackRefusesOutOfRange(t *testing.T) {
	for _, c := range []struct {
		name string
		pack func()
		want string
	}{
		{"phase", func() { pack(0, numPhases, Undecided, false, false) }, "phase 6 out of range"},
		{"outcome", func() { pack(0, Done, numOutcomes, false, false) }, "outcome 5 out of range"},
		{"generation below its bits", func() { pack(1, Done, Closed, false, false) }, "generation field"},
		{"generation in bit 63", func() { pack(1<<63, Done, Closed, false, false) }, "generation field"},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg := ""
			func() {
				defer func() {
					if r := recover(); r != nil {
						msg, _ = r.(string)
					}
				}()
				c.pack()
			}()
			if !strings.Contains(msg, c.want) {
				t.Errorf("panic %q, want one containing %q", msg, c.want)
			}
		})
	}
	w := State(pack(genMask, numPhases-1, numOutcomes-1, true, true))
	if w.Phase() != Done || w.Outcome() != Closed || !w.Owes() || !w.Stolen() || w.Gen() != 1<<genBits-1 {
		t.Errorf("pack of the largest fields = %v (gen %d)", w, w.Gen())
	}
}
