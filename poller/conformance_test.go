package poller_test

import (
	"errors"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// The conformance suite: every test runs against both backends through
// forEach, and the harness fails any test that sees two Events for a tag or
// none for a tag it armed.

func TestArmFiresOnlyWhenReady(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		in := h.tag()
		h.arm(in, a, poller.In)
		h.quiet()
		h.write(b)
		if ev := h.await(in); ev.Events != poller.In {
			t.Fatalf("read side: %v, want ready In only", ev)
		}

		out := h.tag()
		h.arm(out, a, poller.Out) // an empty send buffer is writable at once
		if ev := h.await(out); ev.Events != poller.Out {
			t.Fatalf("write side: %v, want ready Out only", ev)
		}

		rdhup := h.tag()
		h.drain(a)
		h.arm(rdhup, a, poller.In|poller.RdHup)
		h.quiet()
		if err := unix.Shutdown(b, unix.SHUT_WR); err != nil {
			t.Fatal(err)
		}
		if ev := h.await(rdhup); ev.Events&poller.RdHup == 0 {
			t.Fatalf("peer shutdown: %v, want RdHup", ev)
		}
	})
}

// TestInAndOut arms a reader and a writer on one fd. epoll's EPOLLONESHOT
// disables the whole fd when either fires; the other side must be re-armed,
// never lost, and never fire early.
func TestInAndOut(t *testing.T) {
	cases := []struct {
		name  string
		steps []string // "in": make a readable; "out": make a writable
	}{
		{"in-first", []string{"in", "out"}},
		{"out-first", []string{"out", "in"}},
		{"together", []string{"in+out"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEach(t, func(t *testing.T, h *harness) {
				a, b := h.pair()
				h.fill(a) // a is not writable until b drains
				in, out := h.tag(), h.tag()
				h.arm(in, a, poller.In)
				h.arm(out, a, poller.Out)
				h.quiet()
				for i, step := range c.steps {
					switch step {
					case "in":
						h.write(b)
						if ev := h.await(in); ev.Events != poller.In {
							t.Fatalf("in: %v", ev)
						}
					case "out":
						h.drain(b)
						if ev := h.await(out); ev.Events != poller.Out {
							t.Fatalf("out: %v", ev)
						}
					case "in+out":
						h.write(b)
						h.drain(b)
						h.await(in)
						h.await(out)
					}
					if i < len(c.steps)-1 {
						h.quiet() // the other side waits, re-armed
					}
				}
				if h.seen[in].Events != poller.In || h.seen[out].Events != poller.Out {
					t.Fatalf("in %v, out %v", h.seen[in], h.seen[out])
				}
			})
		})
	}
}

// TestSameInterestTwice: two tags with one interest on one fd both fire.
func TestSameInterestTwice(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		t1, t2 := h.tag(), h.tag()
		h.arm(t1, a, poller.In)
		h.arm(t2, a, poller.In)
		h.quiet()
		h.write(b)
		h.await(t1)
		h.await(t2)
	})
}

func TestDisarmBeforeFire(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		h.poll(0) // the arm reaches the kernel
		if !h.p.Disarm(tag) {
			t.Fatal("Disarm of an armed tag = false")
		}
		if h.p.Disarm(tag) {
			t.Fatal("second Disarm = true")
		}
		if ev := h.await(tag); !ev.Canceled || !errors.Is(ev.Err(), poller.ErrCanceled) {
			t.Fatalf("%v, want canceled", ev)
		}
		h.write(b)
		h.quiet()
		if h.p.Disarm(tag) {
			t.Fatal("Disarm after the Event = true")
		}
	})
}

// TestDisarmRacingFire makes the fd ready and disarms in the same loop turn:
// exactly one Event, ready or canceled, whichever won.
func TestDisarmRacingFire(t *testing.T) {
	for _, sameTurn := range []bool{false, true} {
		name := "armed-earlier"
		if sameTurn {
			name = "armed-same-turn"
		}
		t.Run(name, func(t *testing.T) {
			forEach(t, func(t *testing.T, h *harness) {
				a, b := h.pair()
				var ready, canceled int
				for range 100 {
					tag := h.tag()
					h.arm(tag, a, poller.In)
					if !sameTurn {
						h.poll(0)
					}
					h.write(b)
					if !h.p.Disarm(tag) {
						t.Fatal("Disarm before Wait returned the Event = false")
					}
					switch ev := h.await(tag); {
					case ev.Canceled:
						canceled++
					case ev.Events == poller.In:
						ready++
					default:
						t.Fatalf("%v, want ready In or canceled", ev)
					}
					h.drain(a)
				}
				t.Logf("ready %d, canceled %d", ready, canceled)
			})
		})
	}
}

func TestDisarmAfterFire(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		h.write(b)
		h.await(tag)
		if h.p.Disarm(tag) {
			t.Fatal("Disarm of a fired tag = true")
		}
		if h.p.Disarm(12345) {
			t.Fatal("Disarm of a tag never armed = true")
		}
		h.quiet()
	})
}

// TestArmClosedFd: a closed fd is the tag's one Event, EBADF, not an Arm
// error, on both backends.
func TestArmClosedFd(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, _ := h.pair()
		h.close(a) // nothing else of this test opens fds, so a stays free
		tag := h.tag()
		h.arm(tag, a, poller.In)
		if ev := h.await(tag); ev.Errno != unix.EBADF || !errors.Is(ev.Err(), unix.EBADF) {
			t.Fatalf("%v, want EBADF", ev)
		}
	})
}

// TestForgetThenClose is the reactor's close path: Forget, then close. Every
// tag on the fd ends canceled and the file is really released, which close
// alone would not do while io_uring holds it (liburing #932).
func TestForgetThenClose(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		h.fill(a)
		in, out := h.tag(), h.tag()
		h.arm(in, a, poller.In)
		h.arm(out, a, poller.Out)
		h.poll(0)
		h.p.Forget(a)
		if h.p.Disarm(in) || h.p.Disarm(out) {
			t.Fatal("Disarm after Forget = true")
		}
		for _, tag := range []uint64{in, out} {
			if ev := h.await(tag); !ev.Canceled {
				t.Fatalf("%v, want canceled", ev)
			}
		}
		h.close(a)
		h.drain(b)
		h.expectEOF(b)
		h.p.Forget(a) // forgetting an unknown fd does nothing
		h.quiet()
	})
}

// TestClosedBehindBack: the fd is closed without Forget while armed; Disarm
// still yields exactly one Event and releases the file.
func TestClosedBehindBack(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		h.poll(0)
		h.close(a)
		if !h.p.Disarm(tag) {
			t.Fatal("Disarm = false")
		}
		if ev := h.await(tag); !ev.Canceled {
			t.Fatalf("%v, want canceled", ev)
		}
		h.expectEOF(b)
	})
}

// TestFdReuse: the old file stays alive elsewhere (as after fork) and
// becomes ready after its number was reused. The old readiness must never
// reach the tag armed on the new file (golang/go #59545).
func TestFdReuse(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		keep, err := unix.Dup(a) // keeps the old file open
		if err != nil {
			t.Fatal(err)
		}
		h.open[keep] = true
		old := h.tag()
		h.arm(old, a, poller.In)
		h.poll(0)
		before := h.p.Stats().Stale

		c, d := h.pair()
		h.dup2(c, a) // the number a now names c's file
		h.close(c)
		fresh := h.tag()
		h.arm(fresh, a, poller.In)
		h.poll(0)
		h.write(b) // the old file is ready now
		for range 3 {
			h.poll(20e6)
		}
		if ev, ok := h.seen[fresh]; ok {
			t.Fatalf("the old file's readiness reached the new fd's tag: %v", ev)
		}
		// io_uring: old's poll is on the old file and fires Ready; epoll:
		// old's registration was lost with its number and failed when
		// fresh was armed. Either way, exactly one Event.
		t.Logf("old tag: %v", h.await(old))
		if h.p.Backend() == poller.Epoll && h.p.Stats().Stale == before {
			t.Error("epoll: the old registration's event was not counted stale")
		}
		h.write(d)
		if ev := h.await(fresh); ev.Events != poller.In {
			t.Fatalf("%v, want ready In", ev)
		}
	})
}

func TestArmRefused(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, _ := h.pair()
		dup := h.tag()
		h.arm(dup, a, poller.In)
		cases := []struct {
			name   string
			tag    uint64
			fd     int
			events uint32
			want   error
		}{
			{"zero tag", 0, a, poller.In, poller.ErrBadTag},
			{"internal bit", poller.InternalBit | 1, a, poller.In, poller.ErrBadTag},
			{"negative fd", h.tag(), -1, poller.In, poller.ErrBadFd},
			{"unknown bits", h.tag(), a, 1 << 30, poller.ErrBadEvents},
			{"tag in use", dup, a, poller.Out, poller.ErrTagInUse},
			// Another generation of dup's index, on another fd: the
			// poller records tags by index, one at a time.
			{"index in use", dup + 1<<poller.TagIndexBits, a + 1, poller.In, poller.ErrTagInUse},
			{"zero index", 1 << poller.TagIndexBits, a, poller.In, poller.ErrBadTag},
		}
		if strconv.IntSize == 64 {
			// Truncated to 32 bits it would name a, and epoll would
			// report it under a's number: no Event for the tag, ever.
			shift := 32 // a variable, so that 32-bit builds compile
			cases = append(cases, struct {
				name   string
				tag    uint64
				fd     int
				events uint32
				want   error
			}{"fd past int32", h.tag(), a + 1<<shift, poller.In, poller.ErrBadFd})
		}
		for _, c := range cases {
			if err := h.p.Arm(c.tag, c.fd, c.events); !errors.Is(err, c.want) {
				t.Errorf("%s: Arm = %v, want %v", c.name, err, c.want)
			}
		}
		h.quiet() // refused arms have no Event; dup's stays armed
		if st := h.p.Stats(); st.Armed != 1 || st.Arms != 1 {
			t.Fatalf("Stats %+v, want one arm, one armed", st)
		}
	})
}

func TestWaitEmptyBufferPanics(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		defer func() {
			if recover() == nil {
				t.Fatal("Wait(nil) did not panic")
			}
		}()
		h.p.Wait(nil, 0)
	})
}

// TestClose: Close drops armed tags (counted), releases their files, and
// every later call reports ErrClosed.
func TestClose(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			h := &harness{t: t, armed: map[uint64]bool{}, seen: map[uint64]poller.Event{},
				buf: make([]poller.Event, 8), open: map[int]bool{}}
			t.Cleanup(func() {
				for fd := range h.open {
					unix.Close(fd)
				}
			})
			h.p = openPoller(t, poller.Options{Backend: b})
			a, peer := h.pair()
			h.fill(a)
			h.arm(1, a, poller.In)
			h.arm(2, a, poller.Out)
			h.poll(0)
			if err := h.p.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := h.p.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if st := h.p.Stats(); st.Dropped != 2 || st.Armed != 0 {
				t.Fatalf("Stats %+v, want 2 dropped, 0 armed", st)
			}
			if _, err := h.p.Wait(h.buf, 0); !errors.Is(err, poller.ErrClosed) {
				t.Fatalf("Wait after Close: %v", err)
			}
			if err := h.p.Arm(3, a, poller.In); !errors.Is(err, poller.ErrClosed) {
				t.Fatalf("Arm after Close: %v", err)
			}
			if err := h.p.Wake(); !errors.Is(err, poller.ErrClosed) {
				t.Fatalf("Wake after Close: %v", err)
			}
			if h.p.Disarm(1) {
				t.Fatal("Disarm after Close = true")
			}
			h.p.Forget(a)
			h.close(a)
			h.drain(peer)
			h.expectEOF(peer) // Close left no kernel reference to a's file
		})
	}
}

// TestReArmAfterCloseBehindBack: reader and writer armed, the fd's number
// closed while its file lives on elsewhere, then the reader fires. epoll must
// re-arm the writer on a number that no longer names the file: epoll_ctl
// fails and the writer gets a Failed Event instead of being lost. io_uring's
// poll holds the file and keeps waiting until Disarm. Exactly one Event each.
func TestReArmAfterCloseBehindBack(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		h.fill(a)
		keep, err := unix.Dup(a)
		if err != nil {
			t.Fatal(err)
		}
		h.open[keep] = true
		in, out := h.tag(), h.tag()
		h.arm(in, a, poller.In)
		h.arm(out, a, poller.Out)
		h.poll(0)
		h.close(a) // the file lives on through keep
		h.write(b)
		if ev := h.await(in); ev.Events != poller.In {
			t.Fatalf("reader: %v", ev)
		}
		if h.p.Backend() == poller.Epoll {
			if ev := h.await(out); ev.Errno != unix.EBADF {
				t.Fatalf("writer: %v, want failed EBADF", ev)
			}
			return
		}
		h.quiet() // io_uring: the writer still waits on the live file
	})
}

// TestDisarmDuringSpuriousWakeup: the fd is woken, then read dry before
// the loop runs the wake-up, and disarmed in between. On a DEFER_TASKRUN
// ring the poll cannot be disarmed while its wake-up is pending, and a
// POLL_REMOVE answers -EALREADY and is forgotten while the kernel re-queues
// the poll: no Event, ever. The backend's ASYNC_CANCEL must end it.
func TestDisarmDuringSpuriousWakeup(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		for range 20 {
			tag := h.tag()
			h.arm(tag, a, poller.In)
			h.poll(0)
			h.write(b)
			h.drain(a)
			if !h.p.Disarm(tag) {
				t.Fatal("Disarm = false before Wait returned the Event")
			}
			if ev := h.await(tag); !ev.Canceled && ev.Events != poller.In {
				t.Fatalf("%v, want canceled or ready In", ev)
			}
		}
	})
}

// TestForgetBeforeSubmit: arm, Forget and close in one loop turn, then a new
// file takes the number and is ready. An io_uring POLL_ADD still in the SQ
// resolves its fd number when the kernel takes it, so unless Forget hands it
// over first it would arm on the new file and report its readiness to the
// old tag (the gnet #621 class of bug).
func TestForgetBeforeSubmit(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) { forgetBeforeSubmit(t, h, false) })
}

// forgetBeforeSubmit arms on a fresh fd, Forgets it (after a Disarm of its
// own when disarmFirst) and closes it in one loop turn, then puts a ready
// file on the number: the old tag must end canceled.
func forgetBeforeSubmit(t *testing.T, h *harness, disarmFirst bool) {
	a, _ := h.pair()
	h.poll(0)
	tag := h.tag()
	h.arm(tag, a, poller.In)
	if disarmFirst && !h.p.Disarm(tag) {
		t.Fatal("Disarm of a queued arm reported false")
	}
	h.p.Forget(a)
	h.close(a)
	c, d := h.pair()
	if c != a {
		h.dup2(c, a)
		h.close(c)
	}
	h.write(d) // the new file on the old number is readable
	if ev := h.await(tag); !ev.Canceled {
		t.Fatalf("%v, want canceled: the old tag saw the new file", ev)
	}
}

// TestQueued: Queued says whether the next Wait has work the poller's Fd
// cannot announce. An owner parked on Fd trusts it to decide whether it may
// sleep, so it must hold after an io_uring Arm or Disarm (SQEs to submit)
// and after an epoll Disarm (its Canceled Event is decided at once, with
// nothing for the kernel to post), and clear once a Wait took them.
func TestQueued(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		uring := h.p.Backend() == poller.Uring
		h.poll(0) // the io_uring backend queues its own wake-up poll first
		if h.p.Queued() {
			t.Fatal("Queued after a Wait, with nothing armed since")
		}
		a, _ := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		if got := h.p.Queued(); got != uring {
			t.Fatalf("Queued after Arm = %v, want %v", got, uring)
		}
		h.poll(0)
		if h.p.Queued() {
			t.Fatal("Queued after the Wait that submitted the Arm")
		}
		if !h.p.Disarm(tag) {
			t.Fatal("Disarm of an armed tag reported false")
		}
		if !h.p.Queued() {
			t.Fatal("Queued false after Disarm: its cancel (io_uring) or its Canceled Event (epoll) waits for a Wait")
		}
		h.await(tag)
		if h.p.Queued() {
			t.Fatal("Queued after the Disarm's Event came out of Wait")
		}
		b, _ := h.pair()
		tag = h.tag()
		h.arm(tag, b, poller.In)
		h.poll(0)
		h.p.Forget(b)
		if !h.p.Queued() {
			t.Fatal("Queued false after Forget with a tag armed")
		}
		h.await(tag)
	})
}

// TestCallerDisarmsForgetBeforeSubmit is TestForgetBeforeSubmit for a
// caller that disarms first (Options.CallerDisarms, the reactor's way):
// without fd lists, io_uring's Forget must still hand over an arm that
// was disarmed while queued, or the arm would resolve the number after
// the close and report the new file to the old tag.
func TestCallerDisarmsForgetBeforeSubmit(t *testing.T) {
	for _, c := range configs {
		opts := c.opts
		opts.CallerDisarms = true
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, opts)
			h.p = c.wrap(h.p)
			forgetBeforeSubmit(t, h, true)
		})
	}
}
