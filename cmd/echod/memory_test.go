//go:build linux

package main

import "testing"

// TestReleaserDue: a release follows a burst's drain, whether the burst
// spanned ticks or built and drained within one period, and a slow drain
// releases once per releaseMin it frees; steady load whose periods peak
// alike releases nothing, however much it holds.
func TestReleaserDue(t *testing.T) {
	const m = releaseMin
	for _, tc := range []struct {
		name  string
		peaks []int64 // each period's peak, a tick each
		want  []bool  // whether that tick releases
	}{
		{"idle", []int64{0, 0, 0}, []bool{false, false, false}},
		{"steady load, high", []int64{5 * m, 5 * m, 5*m - 1, 5 * m}, []bool{false, false, false, false}},
		{"a burst over ticks, then drained", []int64{0, 2 * m, 4 * m, 4 * m, 0, 0}, []bool{false, false, false, false, true, false}},
		{"a burst within one period", []int64{0, 4 * m, 0}, []bool{false, false, true}},
		{"a drain short of releaseMin", []int64{2 * m, m + 1}, []bool{false, false}},
		{"a slow drain", []int64{4 * m, 3 * m, 2*m + 1, 2 * m, m}, []bool{false, true, false, true, true}},
		{"a second burst after a release", []int64{3 * m, 0, 2 * m, 0}, []bool{false, true, false, true}},
	} {
		r := &releaser{}
		for i, p := range tc.peaks {
			if got := r.due(p); got != tc.want[i] {
				t.Errorf("%s: tick %d (peaks %v): due = %v, want %v", tc.name, i, tc.peaks[:i+1], got, tc.want[i])
			}
		}
	}
}
