package cancel_test

import (
	"strings"
	"testing"

	"github.com/oneshot-io/oneshot/cancel"
)

type payload struct{ fd int }

type handle = cancel.Handle[payload]

// setup paths: how to reach each named state from a fresh slot.
var setups = map[string]func(t *testing.T, h handle){
	"Submitted/u": func(t *testing.T, h handle) {},
	"Submitted/a": func(t *testing.T, h handle) { h.Cancel() },
	"OnQueue/u":   func(t *testing.T, h handle) { mustAct(t, h.Arm(), cancel.MustArm) },
	"OnQueue/a": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		h.Cancel()
	},
	"PendingWork/u": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		mustAct(t, h.Wake(cancel.Undecided), cancel.MustRequeue)
	},
	"PendingWork/a": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		mustAct(t, h.Wake(cancel.Undecided), cancel.MustRequeue)
		h.Cancel()
	},
	"Completing/r": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		mustAct(t, h.Wake(cancel.Ready), cancel.MustDeliver)
	},
	"Completing/a+owes": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		h.Cancel()
		mustAct(t, h.Withdraw(), cancel.MustDeliver|cancel.MustCancelInKernel)
	},
	"Done/r": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		mustAct(t, h.Wake(cancel.Ready), cancel.MustDeliver)
		mustAct(t, h.Delivered(), cancel.MustRelease)
	},
	"Done/a+owes": func(t *testing.T, h handle) {
		mustAct(t, h.Arm(), cancel.MustArm)
		h.Cancel()
		mustAct(t, h.Withdraw(), cancel.MustDeliver|cancel.MustCancelInKernel)
		mustAct(t, h.Delivered(), cancel.NothingToDo)
	},
}

func mustAct(t *testing.T, got, want cancel.Action) {
	t.Helper()
	if got != want {
		t.Fatalf("action = %v, want %v", got, want)
	}
}

type event struct {
	name string
	do   func(h handle) (cancel.Action, bool) // bool: Cancel's report
}

var (
	evArm       = event{"Arm", func(h handle) (cancel.Action, bool) { return h.Arm(), false }}
	evCancel    = event{"Cancel", func(h handle) (cancel.Action, bool) { ok, a := h.Cancel(); return a, ok }}
	evClose     = event{"Close", func(h handle) (cancel.Action, bool) { return h.Close(), false }}
	evWake      = event{"Wake(Ready)", func(h handle) (cancel.Action, bool) { return h.Wake(cancel.Ready), false }}
	evWakeErr   = event{"Wake(Failed)", func(h handle) (cancel.Action, bool) { return h.Wake(cancel.Failed), false }}
	evSpurious  = event{"Wake(spurious)", func(h handle) (cancel.Action, bool) { return h.Wake(cancel.Undecided), false }}
	evDisarmed  = event{"Disarmed", func(h handle) (cancel.Action, bool) { return h.Disarmed(), false }}
	evSteal     = event{"Steal(Failed)", func(h handle) (cancel.Action, bool) { return h.Steal(cancel.Failed), false }}
	evStealRdy  = event{"Steal(Ready)", func(h handle) (cancel.Action, bool) { return h.Steal(cancel.Ready), false }}
	evRequeue   = event{"Requeue", func(h handle) (cancel.Action, bool) { return h.Requeue(), false }}
	evWithdraw  = event{"Withdraw", func(h handle) (cancel.Action, bool) { return h.Withdraw(), false }}
	evDelivered = event{"Delivered", func(h handle) (cancel.Action, bool) { return h.Delivered(), false }}
	evReceived  = event{"Received", func(h handle) (cancel.Action, bool) { return h.Received(), false }}
)

// want describes the state after the event.
type want struct {
	phase   cancel.Phase
	outcome cancel.Outcome
	owes    bool
	stolen  bool
}

// TestTransitions checks every row of the package doc's table, one
// (state, event) pair per case.
func TestTransitions(t *testing.T) {
	cases := []struct {
		from     string
		ev       event
		act      cancel.Action
		canceled bool
		to       want
	}{
		{"Submitted/u", evArm, cancel.MustArm, false, want{cancel.OnQueue, cancel.Undecided, true, false}},
		{"Submitted/u", evCancel, cancel.NothingToDo, true, want{cancel.Submitted, cancel.Canceled, false, false}},
		{"Submitted/u", evClose, cancel.NothingToDo, false, want{cancel.Submitted, cancel.Closed, false, false}},
		{"Submitted/a", evArm, cancel.MustDeliver, false, want{cancel.Completing, cancel.Canceled, false, true}},
		{"Submitted/a", evCancel, cancel.NothingToDo, true, want{cancel.Submitted, cancel.Canceled, false, false}},
		{"Submitted/a", evClose, cancel.NothingToDo, false, want{cancel.Submitted, cancel.Canceled, false, false}},
		{"OnQueue/u", evSteal, cancel.MustDeliver, false, want{cancel.Completing, cancel.Failed, false, true}},
		{"OnQueue/u", evStealRdy, cancel.MustDeliver, false, want{cancel.Completing, cancel.Ready, false, true}},
		{"OnQueue/u", evWake, cancel.MustDeliver, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"OnQueue/u", evWakeErr, cancel.MustDeliver, false, want{cancel.Completing, cancel.Failed, false, false}},
		{"OnQueue/u", evSpurious, cancel.MustRequeue, false, want{cancel.PendingWork, cancel.Undecided, false, false}},
		{"OnQueue/u", evCancel, cancel.MustAskLoopToCancel, true, want{cancel.OnQueue, cancel.Canceled, true, false}},
		{"OnQueue/u", evClose, cancel.MustAskLoopToCancel, false, want{cancel.OnQueue, cancel.Closed, true, false}},
		{"OnQueue/a", evWithdraw, cancel.MustDeliver | cancel.MustCancelInKernel, false, want{cancel.Completing, cancel.Canceled, true, false}},
		{"OnQueue/a", evWake, cancel.MustDeliver, false, want{cancel.Completing, cancel.Canceled, false, false}},
		{"OnQueue/a", evSpurious, cancel.MustDeliver, false, want{cancel.Completing, cancel.Canceled, false, false}},
		{"OnQueue/a", evDisarmed, cancel.MustDeliver, false, want{cancel.Completing, cancel.Canceled, false, false}},
		{"OnQueue/a", evSteal, cancel.MustDeliver, false, want{cancel.Completing, cancel.Canceled, false, true}},
		{"OnQueue/a", evCancel, cancel.NothingToDo, true, want{cancel.OnQueue, cancel.Canceled, true, false}},
		{"PendingWork/u", evRequeue, cancel.MustArm, false, want{cancel.OnQueue, cancel.Undecided, true, false}},
		{"PendingWork/u", evCancel, cancel.NothingToDo, true, want{cancel.PendingWork, cancel.Canceled, false, false}},
		{"PendingWork/u", evClose, cancel.NothingToDo, false, want{cancel.PendingWork, cancel.Closed, false, false}},
		{"PendingWork/u", evSteal, cancel.NothingToDo, false, want{cancel.PendingWork, cancel.Undecided, false, false}},
		{"PendingWork/u", evWake, cancel.Stale, false, want{cancel.PendingWork, cancel.Undecided, false, false}},
		{"PendingWork/u", evWithdraw, cancel.NothingToDo, false, want{cancel.PendingWork, cancel.Undecided, false, false}},
		{"PendingWork/a", evRequeue, cancel.MustDeliver, false, want{cancel.Completing, cancel.Canceled, false, false}},
		{"Completing/r", evCancel, cancel.NothingToDo, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"Completing/r", evClose, cancel.NothingToDo, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"Completing/r", evWake, cancel.Stale, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"Completing/r", evSteal, cancel.NothingToDo, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"Completing/r", evWithdraw, cancel.NothingToDo, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"Completing/r", evDelivered, cancel.MustRelease, false, want{cancel.Done, cancel.Ready, false, false}},
		{"Completing/a+owes", evWake, cancel.NothingToDo, false, want{cancel.Completing, cancel.Canceled, false, false}},
		{"Completing/a+owes", evDisarmed, cancel.NothingToDo, false, want{cancel.Completing, cancel.Canceled, false, false}},
		{"Completing/a+owes", evDelivered, cancel.NothingToDo, false, want{cancel.Done, cancel.Canceled, true, false}},
		{"Completing/a+owes", evCancel, cancel.NothingToDo, true, want{cancel.Completing, cancel.Canceled, true, false}},
		{"Done/a+owes", evWake, cancel.MustRelease, false, want{cancel.Done, cancel.Canceled, false, false}},
		{"Done/a+owes", evDisarmed, cancel.MustRelease, false, want{cancel.Done, cancel.Canceled, false, false}},
		{"Done/a+owes", evCancel, cancel.NothingToDo, true, want{cancel.Done, cancel.Canceled, true, false}},
		{"Done/r", evCancel, cancel.NothingToDo, false, want{cancel.Done, cancel.Ready, false, false}},
		{"Done/r", evWake, cancel.Stale, false, want{cancel.Done, cancel.Ready, false, false}},
		{"Done/r", evWithdraw, cancel.NothingToDo, false, want{cancel.Done, cancel.Ready, false, false}},
		// Bytes a multishot receive brought: handed over wherever the
		// kernel still owes, the outcome untouched; Stale where it owes
		// nothing (it cannot post then).
		{"OnQueue/u", evReceived, cancel.MustConsume, false, want{cancel.OnQueue, cancel.Undecided, true, false}},
		{"OnQueue/a", evReceived, cancel.MustConsume, false, want{cancel.OnQueue, cancel.Canceled, true, false}},
		{"Completing/a+owes", evReceived, cancel.MustConsume, false, want{cancel.Completing, cancel.Canceled, true, false}},
		{"Done/a+owes", evReceived, cancel.MustConsume, false, want{cancel.Done, cancel.Canceled, true, false}},
		{"Submitted/u", evReceived, cancel.Stale, false, want{cancel.Submitted, cancel.Undecided, false, false}},
		{"PendingWork/u", evReceived, cancel.Stale, false, want{cancel.PendingWork, cancel.Undecided, false, false}},
		{"Completing/r", evReceived, cancel.Stale, false, want{cancel.Completing, cancel.Ready, false, false}},
		{"Done/r", evReceived, cancel.Stale, false, want{cancel.Done, cancel.Ready, false, false}},
	}
	for _, c := range cases {
		t.Run(c.from+"/"+c.ev.name, func(t *testing.T) {
			tb := cancel.NewTable[payload](1)
			h, err := tb.Acquire()
			if err != nil {
				t.Fatal(err)
			}
			setups[c.from](t, h)
			act, canceled := c.ev.do(h)
			if act != c.act {
				t.Errorf("action = %v, want %v", act, c.act)
			}
			if c.ev.name == "Cancel" && canceled != c.canceled {
				t.Errorf("Cancel reported %v, want %v", canceled, c.canceled)
			}
			st := h.State()
			got := want{st.Phase(), st.Outcome(), st.Owes(), st.Stolen()}
			if got != c.to {
				t.Errorf("state = %v, want %+v", st, c.to)
			}
			if st.Gen() != h.Gen() {
				t.Errorf("generation moved to %d without Release (handle %d)", st.Gen(), h.Gen())
			}
		})
	}
}

// TestMisusePanics: each reactor bug the table forbids panics with a message
// naming the operation, instead of corrupting the word.
func TestMisusePanics(t *testing.T) {
	cases := []struct {
		from string
		op   string
		do   func(h handle, tb *cancel.Table[payload])
	}{
		{"OnQueue/u", "Arm", func(h handle, _ *cancel.Table[payload]) { h.Arm() }},
		{"OnQueue/u", "Requeue", func(h handle, _ *cancel.Table[payload]) { h.Requeue() }},
		{"OnQueue/u", "Withdraw (no one asked to cancel)", func(h handle, _ *cancel.Table[payload]) { h.Withdraw() }},
		{"OnQueue/u", "Disarmed (no one asked to cancel)", func(h handle, _ *cancel.Table[payload]) { h.Disarmed() }},
		{"OnQueue/u", "Delivered", func(h handle, _ *cancel.Table[payload]) { h.Delivered() }},
		{"Submitted/u", "Steal", func(h handle, _ *cancel.Table[payload]) { h.Steal(cancel.Failed) }},
		{"OnQueue/u", "Steal with outcome Canceled", func(h handle, _ *cancel.Table[payload]) { h.Steal(cancel.Canceled) }},
		{"OnQueue/u", "Wake with outcome Closed", func(h handle, _ *cancel.Table[payload]) { h.Wake(cancel.Closed) }},
		{"Done/r", "Delivered", func(h handle, _ *cancel.Table[payload]) { h.Delivered() }},
		{"Done/a+owes", "Release", func(h handle, tb *cancel.Table[payload]) { tb.Release(h) }},
		{"Completing/r", "Release", func(h handle, tb *cancel.Table[payload]) { tb.Release(h) }},
	}
	for _, c := range cases {
		t.Run(c.from+"/"+c.op, func(t *testing.T) {
			tb := cancel.NewTable[payload](1)
			h, err := tb.Acquire()
			if err != nil {
				t.Fatal(err)
			}
			setups[c.from](t, h)
			before := h.State()
			msg := panicMessage(func() { c.do(h, tb) })
			if !strings.Contains(msg, c.op) {
				t.Errorf("panic = %q, want one naming %q", msg, c.op)
			}
			if after := h.State(); after != before {
				t.Errorf("state changed from %v to %v by a refused operation", before, after)
			}
		})
	}
}

func panicMessage(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg, _ = r.(string)
			if msg == "" {
				msg = "non-string panic"
			}
		}
	}()
	f()
	return ""
}

// TestStaleHandle: once a slot is released and reused, every operation
// through the old handle reports Stale (Cancel false) and touches nothing,
// and the old tag no longer looks up.
func TestStaleHandle(t *testing.T) {
	tb := cancel.NewTable[payload](1)
	old, err := tb.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	setups["Done/r"](t, old)
	oldTag := old.Tag()
	tb.Release(old)
	if _, ok := tb.Lookup(oldTag); ok {
		t.Fatal("Lookup found a released slot's tag")
	}
	cur, err := tb.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Index() != old.Index() {
		t.Fatalf("expected the released slot back (LIFO), got index %d want %d", cur.Index(), old.Index())
	}
	if cur.Tag() == oldTag {
		t.Fatalf("reused slot kept its tag %#x", oldTag)
	}
	mustAct(t, cur.Arm(), cancel.MustArm)
	before := cur.State()
	ops := []event{evCancel, evClose, evWake, evSpurious, evDisarmed, evSteal, evWithdraw}
	for _, ev := range ops {
		act, canceled := ev.do(old)
		if act != cancel.Stale || canceled {
			t.Errorf("%s on the old handle = %v, %v; want Stale, false", ev.name, act, canceled)
		}
	}
	if after := cur.State(); after != before {
		t.Errorf("old handle changed the new life: %v -> %v", before, after)
	}
	if _, ok := tb.Lookup(oldTag); ok {
		t.Error("old tag looks up the new life")
	}
	if h, ok := tb.Lookup(cur.Tag()); !ok || h != cur {
		t.Error("current tag does not look up its handle")
	}
	if got := tb.StaleLookups(); got != 2 {
		t.Errorf("StaleLookups = %d, want 2", got)
	}
}

// TestTags: tags are never zero, never have bit 63 set, are distinct across
// live slots, and malformed tags are refused.
func TestTags(t *testing.T) {
	tb := cancel.NewTable[payload](0)
	seen := map[uint64]bool{}
	var hs []handle
	for range 600 { // more than two chunks: exercises growth
		h, err := tb.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		tag := h.Tag()
		if tag == 0 || tag>>63 != 0 || seen[tag] {
			t.Fatalf("bad tag %#x (seen=%v)", tag, seen[tag])
		}
		seen[tag] = true
		hs = append(hs, h)
	}
	for _, h := range hs {
		got, ok := tb.Lookup(h.Tag())
		if !ok || got != h {
			t.Fatalf("Lookup(%#x) = %v, %v", h.Tag(), got, ok)
		}
	}
	for _, bad := range []uint64{0, 1 << 63, hs[0].Tag() | 1<<63, hs[0].Tag() | cancel.CallerBit, uint64(tb.Cap()+1) | hs[0].Tag()&^(1<<24-1)} {
		if _, ok := tb.Lookup(bad); ok {
			t.Errorf("Lookup(%#x) accepted a malformed tag", bad)
		}
	}
	n := 0
	tb.Range(func(cancel.Handle[payload], cancel.State) bool { n++; return true })
	if n != len(hs) {
		t.Errorf("Range saw %d live slots, want %d", n, len(hs))
	}
}

func TestActionString(t *testing.T) {
	cases := []struct {
		a    cancel.Action
		want string
	}{
		{cancel.NothingToDo, "NothingToDo"},
		{cancel.MustDeliver, "MustDeliver"},
		{cancel.MustDeliver | cancel.MustCancelInKernel, "MustDeliver|MustCancelInKernel"},
	}
	for _, c := range cases {
		if got := c.a.String(); got != c.want {
			t.Errorf("%d.String() = %q, want %q", uint8(c.a), got, c.want)
		}
	}
	if !(cancel.MustDeliver | cancel.MustCancelInKernel).Has(cancel.MustDeliver) || cancel.MustArm.Has(cancel.NothingToDo) {
		t.Error("Has")
	}
}

// TestCancellable: State.Cancellable, which the reactor consults before it
// bothers a loop with a cancel, says true exactly in the states where a
// Cancel then decides the outcome, in every named state. (Cancel itself
// also returns true on a request a canceller already decided.)
func TestCancellable(t *testing.T) {
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			tb := cancel.NewTable[payload](1)
			h, err := tb.Acquire()
			if err != nil {
				t.Fatal(err)
			}
			setup(t, h)
			st := h.State()
			canceled, _ := h.Cancel()
			decided := st.Outcome() == cancel.Undecided && h.State().Outcome() == cancel.Canceled
			if decided != st.Cancellable() || decided && !canceled {
				t.Errorf("%v: Cancellable() = %v, but Cancel() = %v left %v", st, st.Cancellable(), canceled, h.State())
			}
		})
	}
}

// TestNamesOutOfRange: a phase or outcome outside its enumeration (a
// corrupt word in a panic message) prints as a number, never panics.
func TestNamesOutOfRange(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{cancel.Done.String(), "Done"},
		{cancel.Phase(cancel.Done + 1).String(), "Phase(6)"},
		{cancel.Phase(255).String(), "Phase(255)"},
		{cancel.Closed.String(), "Closed"},
		{cancel.Outcome(cancel.Closed + 1).String(), "Outcome(5)"},
		{cancel.Outcome(255).String(), "Outcome(255)"},
	} {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
}

// TestIsZero: the zero Handle, which the reactor uses as the end of its
// per-fd lists, is the only one that reports IsZero; a handle keeps
// reporting false after its slot is released and reused (it is stale, not
// zero).
func TestIsZero(t *testing.T) {
	var zero handle
	if !zero.IsZero() {
		t.Fatal("the zero Handle is not IsZero")
	}
	tb := cancel.NewTable[payload](1)
	h, err := tb.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if h.IsZero() {
		t.Fatal("an acquired handle is IsZero")
	}
	setups["Done/r"](t, h)
	tb.Release(h)
	if h.IsZero() {
		t.Fatal("a released handle is IsZero")
	}
}
