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
		{"generation in CallerBit", func() { pack(CallerBit, Done, Closed, false, false) }, "generation field"},
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

// TestStateWordLayout checks the literal masks drawn in state.go and
// table.go against each other: each field is one contiguous run of bits at
// its shift, the fields do not overlap, the low fields hold every Phase and
// Outcome, the generation starts right above the tag's index and stops
// short of bit 62 (CallerBit; 63 is the poller's), and the table's chunks tile the index
// field.
func TestStateWordLayout(t *testing.T) {
	run := func(mask uint64) (shift, width int) {
		if mask == 0 {
			return -1, 0
		}
		for mask&(1<<shift) == 0 {
			shift++
		}
		for m := mask >> shift; m&1 == 1; m >>= 1 {
			width++
		}
		if mask != (1<<width-1)<<shift {
			return -1, 0
		}
		return shift, width
	}
	for _, f := range []struct {
		name        string
		mask        uint64
		shift, bits int
		holds       int // values the field must represent; 0: a flag or wider
	}{
		{"phase", phaseMask, phaseShift, 3, int(numPhases)},
		{"outcome", outcomeMask, outcomeShift, 3, int(numOutcomes)},
		{"owes", owesBit, 6, 1, 0},
		{"stolen", stolenBit, 7, 1, 0},
		{"index", indexMask, 0, indexBits, 0},
		{"generation", genMask, genShift, genBits, 0},
	} {
		shift, width := run(f.mask)
		if shift != f.shift || width != f.bits {
			t.Errorf("%s mask %#x: a run of %d bits at %d, want %d at %d", f.name, f.mask, width, shift, f.bits, f.shift)
		}
		if f.holds > 1<<width {
			t.Errorf("%s: %d bits cannot hold %d values", f.name, width, f.holds)
		}
	}
	fields := []uint64{phaseMask, outcomeMask, owesBit, stolenBit, genMask}
	var union uint64
	for _, m := range fields {
		if union&m != 0 {
			t.Errorf("mask %#x overlaps another field (%#x)", m, union&m)
		}
		union |= m
	}
	if lowMask != phaseMask|outcomeMask|owesBit|stolenBit {
		t.Errorf("lowMask %#x is not the union of the low fields", lowMask)
	}
	if lowMask&^indexMask != 0 {
		t.Errorf("lowMask %#x does not fit under the index field %#x", lowMask, indexMask)
	}
	if genShift != indexBits || genOne != 1<<genShift || genMask&(1<<63|CallerBit) != 0 || genShift+genBits != 62 {
		t.Errorf("generation: shift %d bits %d one %#x mask %#x; want it right above the %d-bit index, up to bit 61 (62 is CallerBit)",
			genShift, genBits, genOne, genMask, indexBits)
	}
	if maxSlots != indexMask || chunkSize != 1<<chunkShift || chunkMask != chunkSize-1 || maxChunks != maxSlots/chunkSize {
		t.Errorf("table: maxSlots %#x chunkSize %d chunkMask %#x maxChunks %#x disagree with the index field", maxSlots, chunkSize, chunkMask, maxChunks)
	}
}
