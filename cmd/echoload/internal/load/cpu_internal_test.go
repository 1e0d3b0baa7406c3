//go:build linux

package load

import (
	"testing"
	"time"
)

// TestParseStatCPU: utime and stime are fields 14 and 15, counted after
// the last ')', whatever the command name holds.
func TestParseStatCPU(t *testing.T) {
	const rest = " S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0 100"
	for _, tc := range []struct {
		name, stat  string
		user, total time.Duration
		wantErr     bool
	}{
		{name: "plain", stat: "42 (echod)" + rest, user: 2500 * time.Millisecond, total: 3250 * time.Millisecond},
		{name: "spaces and parens in the name", stat: "42 (a) (b c))" + rest, user: 2500 * time.Millisecond, total: 3250 * time.Millisecond},
		{name: "no name", stat: "42 echod" + rest, wantErr: true},
		{name: "cut short", stat: "42 (echod) S 1 2 3", wantErr: true},
		{name: "not a number", stat: "42 (echod) S 1 2 3 4 5 6 7 8 9 10 x 75 0", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, total, err := parseStatCPU(tc.stat)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseStatCPU(%q) = %v, %v, nil; want an error", tc.stat, user, total)
				}
				return
			}
			if err != nil || user != tc.user || total != tc.total {
				t.Fatalf("parseStatCPU(%q) = %v, %v, %v; want %v, %v, nil", tc.stat, user, total, err, tc.user, tc.total)
			}
		})
	}
}
