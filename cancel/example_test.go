package cancel_test

import (
	"fmt"

	"github.com/oneshot-io/oneshot/cancel"
)

// The loop's side of one request that becomes ready: each step's result says
// what the caller must do next.
func ExampleHandle_Arm() {
	tb := cancel.NewTable[payload](16)
	h, _ := tb.Acquire() // submitter; then hands h to the loop
	fmt.Println(h.Arm()) // loop: arm the backend for h.Tag()
	got, _ := tb.Lookup(h.Tag())
	a := got.Wake(cancel.Ready) // loop: the kernel's completion was reaped
	fmt.Println(a, got.State().Outcome())
	a = got.Delivered() // loop: after running the callback
	fmt.Println(a)
	tb.Release(got)
	// Output:
	// MustArm
	// MustDeliver Ready
	// MustRelease
}

// A cancel that reaches an armed request: the canceller learns it won and
// must ask the loop to cancel in the kernel; the slot stays unreusable until
// the kernel's final completion for the tag is reaped.
func ExampleHandle_Cancel() {
	tb := cancel.NewTable[payload](16)
	h, _ := tb.Acquire()
	h.Arm()
	won, a := h.Cancel() // any goroutine
	fmt.Println(won, a)
	fmt.Println(h.Withdraw()) // loop, on the canceller's message
	fmt.Println(h.Delivered())
	fmt.Println(h.Wake(cancel.Failed)) // the kernel's final (-ECANCELED) completion
	tb.Release(h)
	won, a = h.Cancel() // the slot was recycled: touches nothing
	fmt.Println(won, a)
	// Output:
	// true MustAskLoopToCancel
	// MustDeliver|MustCancelInKernel
	// NothingToDo
	// MustRelease
	// false Stale
}

// The closer finds every live request with Range and closes it; a request
// that is armed needs the loop to withdraw it, one still queued is stolen
// by the loop when it dequeues it.
func ExampleTable_Range() {
	tb := cancel.NewTable[payload](16)
	queued, _ := tb.Acquire()
	armed, _ := tb.Acquire()
	armed.Arm()
	tb.Range(func(h cancel.Handle[payload], st cancel.State) bool {
		fmt.Println(st.Phase(), h.Close())
		return true
	})
	fmt.Println(queued.Arm(), queued.State().Outcome()) // the loop dequeues it
	fmt.Println(armed.Withdraw())                       // the loop, on the closer's message
	// Output:
	// Submitted NothingToDo
	// OnQueue MustAskLoopToCancel
	// MustDeliver Closed
	// MustDeliver|MustCancelInKernel
}

// A spurious wakeup hands the request back to the loop, which re-arms it
// unless a cancel landed meanwhile.
func ExampleHandle_Requeue() {
	tb := cancel.NewTable[payload](16)
	h, _ := tb.Acquire()
	h.Arm()
	fmt.Println(h.Wake(cancel.Undecided)) // the other direction fired
	fmt.Println(h.Cancel())               // lands while the loop holds it
	fmt.Println(h.Requeue())              // finished as cancelled, not re-armed
	// Output:
	// MustRequeue
	// true NothingToDo
	// MustDeliver
}
