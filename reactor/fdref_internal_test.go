package reactor

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Each transition of fdRef, one test each (the table of fdRef's doc).

func TestFdRefIncrefDecref(t *testing.T) {
	var f fdRef
	for i := 0; i < 2; i++ {
		if !f.incref() {
			t.Fatalf("incref %d on an open fd refused", i)
		}
	}
	for i := 0; i < 2; i++ {
		if f.decref() {
			t.Fatalf("decref %d of an open fd said close it", i)
		}
	}
	if f.state.Load() != 0 {
		t.Fatalf("state %#x after balanced increfs, want 0", f.state.Load())
	}
}

func TestFdRefCloseIdle(t *testing.T) {
	var f fdRef
	if !f.increfAndClose() {
		t.Fatal("first close refused")
	}
	if !f.isClosed() {
		t.Fatal("not marked closed")
	}
	if f.incref() {
		t.Fatal("incref granted after close")
	}
	if !f.decref() {
		t.Fatal("the closer's decref of an idle fd must close it")
	}
	if f.increfAndClose() {
		t.Fatal("second close granted")
	}
}

func TestFdRefCloseWhileInUse(t *testing.T) {
	var f fdRef
	f.incref() // a Read in flight
	f.incref() // a Write in flight
	if !f.increfAndClose() {
		t.Fatal("close refused")
	}
	if f.decref() {
		t.Fatal("the closer closed the fd under two operations")
	}
	if f.decref() {
		t.Fatal("closed with one operation still in flight")
	}
	if !f.decref() {
		t.Fatal("the last operation's decref must close the fd")
	}
}

func TestFdRefMisusePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"decref without incref": func() { var f fdRef; f.decref() },
		"reference overflow": func() {
			var f fdRef
			f.state.Store(refMask)
			f.incref()
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}

// TestFdRefStress: operations racing one Close; exactly one party is told
// to close the fd, only after every granted operation ended, and no
// operation is granted after the close mark.
func TestFdRefStress(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	for i := 0; i < rounds; i++ {
		var f fdRef
		var inFlight, destroyed atomic.Int32
		destroy := func() {
			if inFlight.Load() != 0 {
				t.Error("fd closed under an operation")
			}
			destroyed.Add(1)
		}
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 100 && f.incref(); n++ {
					inFlight.Add(1)
					inFlight.Add(-1)
					if f.decref() {
						destroy()
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if f.increfAndClose() && f.decref() {
				destroy()
			}
		}()
		wg.Wait()
		if !f.isClosed() {
			t.Fatal("close mark lost")
		}
		if f.incref() {
			t.Fatal("incref granted after close")
		}
		if n := destroyed.Load(); n != 1 {
			t.Fatalf("round %d: fd closed %d times, want once", i, n)
		}
	}
}
