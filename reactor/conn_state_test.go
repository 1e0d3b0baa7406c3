package reactor

import (
	"os"
	"sort"
	"strings"
	"testing"
)

// TestConnPhaseTable parses the move table in conn_state.go's doc comment
// and checks that connEdges, which setPhase enforces, holds exactly those
// moves; and that from open every phase is reachable and every phase can
// reach closed (no Conn can be stuck short of OnClose).
func TestConnPhaseTable(t *testing.T) {
	src, err := os.ReadFile("conn_state.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]connPhase{}
	for p := range numPhases {
		names[p.String()] = p
	}
	var doc []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "//"))
		switch {
		case len(f) >= 3 && f[0] == "from" && f[1] == "to" && f[2] == "on":
			in = true
		case !in || len(f) > 0 && strings.HasPrefix(f[0], "---"):
		case len(f) < 2 || !strings.HasPrefix(line, "//\t"):
			in = false
		default:
			from, ok1 := names[f[0]]
			to, ok2 := names[f[1]]
			if !ok1 || !ok2 {
				t.Fatalf("table row %q names an unknown phase", line)
			}
			doc = append(doc, from.String()+"→"+to.String())
		}
	}
	sort.Strings(doc)
	code := strings.Fields(edgesString())
	sort.Strings(code)
	if strings.Join(doc, " ") != strings.Join(code, " ") {
		t.Fatalf("the doc table and connEdges differ:\ndoc:  %v\ncode: %v", doc, code)
	}
	if len(doc) == 0 {
		t.Fatal("no table rows parsed")
	}
	reach := func(from connPhase, fwd bool) [numPhases]bool {
		var seen [numPhases]bool
		seen[from] = true
		for changed := true; changed; {
			changed = false
			for a := range numPhases {
				for b := range numPhases {
					x, y := a, b
					if !fwd {
						x, y = b, a
					}
					if connEdges[a][b] && seen[x] && !seen[y] {
						seen[y], changed = true, true
					}
				}
			}
		}
		return seen
	}
	fromOpen, toClosed := reach(phOpen, true), reach(phClosed, false)
	for p := range numPhases {
		if !fromOpen[p] {
			t.Errorf("%v cannot be reached from open", p)
		}
		if !toClosed[p] {
			t.Errorf("%v cannot reach closed: a Conn there would never get OnClose", p)
		}
	}
	for p := range numPhases {
		if connEdges[phClosed][p] {
			t.Errorf("closed → %v: closed must be final", p)
		}
	}
}

// TestSetPhaseRefusesMovesOutsideTheTable: a move the table does not hold
// is a bug and panics, naming both phases; the Listener's Paused count
// follows every move in and out of paused.
func TestSetPhaseRefusesMovesOutsideTheTable(t *testing.T) {
	ln := &Listener{}
	for from := range numPhases {
		for to := range numPhases {
			c := &Conn{ln: ln, fd: 7}
			c.st.setPhase(from)
			paused := ln.paused.Load()
			func() {
				defer func() {
					r := recover()
					if connEdges[from][to] && r != nil {
						t.Errorf("%v → %v panicked: %v", from, to, r)
					}
					if !connEdges[from][to] {
						msg, _ := r.(string)
						if !strings.Contains(msg, from.String()+" → "+to.String()) {
							t.Errorf("%v → %v: panic %q, want one naming the move", from, to, r)
						}
					}
				}()
				c.setPhase(to)
			}()
			if !connEdges[from][to] {
				continue
			}
			want := paused
			if from == phPaused {
				want--
			}
			if to == phPaused {
				want++
			}
			if got := ln.paused.Load(); got != want {
				t.Errorf("%v → %v: Paused %d, want %d", from, to, got, want)
			}
		}
	}
}
