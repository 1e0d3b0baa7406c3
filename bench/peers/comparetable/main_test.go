package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeReport writes one round's echoload --json report of a server; a
// cpu of 0 writes a round that failed (errors, no CPU figure), a negative
// one a round a signal cut short.
func writeReport(t *testing.T, dir, server, cell string, round int, cpu float64) {
	t.Helper()
	rep := map[string]any{"messages": 1000, "msgs_per_sec": 1000.0, "latency_us": map[string]float64{"p99": 10}}
	switch {
	case cpu == 0:
		rep["error_total"], rep["first_error"] = 1, "connection reset"
	case cpu < 0:
		rep["interrupted"] = true
		rep["cpu"] = map[string]any{"client_us_per_msg": 1.0, "server_us_per_msg": -cpu}
	default:
		rep["cpu"] = map[string]any{"client_us_per_msg": 1.0, "server_us_per_msg": cpu}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "cells", fmt.Sprintf("%s_%s_r%d.json", server, cell, round))
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCPURatios: the ratio of medians and the median of the rounds' own
// ratios differ where the machine's speed drifted between rounds, and a
// failed round is left out of the pairs as it is of the medians.
func TestCPURatios(t *testing.T) {
	for _, tc := range []struct {
		name           string
		base, other    []float64 // CPU µs/msg by round; 0 = a failed round
		median, paired float64   // other over base; NaN = none
	}{
		// Rounds 2 and 3 ran slower for both: medians 10/10.5, rounds
		// 0.8, 1.05, 1.10.
		{"drift", []float64{10, 20, 10}, []float64{8, 21, 11}, 11.0 / 10, 1.05},
		{"steady", []float64{10, 10, 10}, []float64{9, 9, 9}, 0.9, 0.9},
		// Round 2 of base failed: medians over 2 and 3 rounds; pairs
		// are rounds 1 and 3 (0.5, 2), whose median is their mean.
		{"failed round", []float64{10, 0, 5}, []float64{5, 100, 10}, 10.0 / 7.5, 1.25},
		{"no pair", []float64{10, 0}, []float64{0, 9}, 0.9, math.NaN()},
		// Round 2 of other was interrupted: left out as a failed one
		// (counted, its 100 would make both ratios 5.45).
		{"interrupted round", []float64{10, 10}, []float64{9, -100}, 0.9, 0.9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "cells"), 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range tc.base {
				writeReport(t, dir, "a", "1x64", i+1, tc.base[i])
				writeReport(t, dir, "b", "1x64", i+1, tc.other[i])
			}
			var out bytes.Buffer
			if err := run([]string{"--dir", dir, "--servers", "a b", "--cells", "1x64", "--base", "a", "--ref", "a"}, &out); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
			if err != nil {
				t.Fatal(err)
			}
			var got struct{ Rows []Row }
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			r := got.Rows[1]
			check := func(what string, p *float64, want float64) {
				t.Helper()
				switch {
				case math.IsNaN(want) && p != nil:
					t.Errorf("%s = %v, want none", what, *p)
				case !math.IsNaN(want) && (p == nil || math.Abs(*p-want) > 1e-9):
					t.Errorf("%s = %v, want %v", what, p, want)
				}
			}
			check("CPURatio", r.CPURatio, tc.median)
			check("CPURatioPaired", r.CPURatioPaired, tc.paired)
			check("CPURefRatioPaired", r.CPURefRatioPaired, tc.paired)
			if !math.IsNaN(tc.paired) {
				if want := fmt.Sprintf("%.2f (%.2f)", tc.median, tc.paired); !strings.Contains(out.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
