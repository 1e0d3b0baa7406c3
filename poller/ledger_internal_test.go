//go:build linux

package poller

import (
	"errors"
	"maps"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// TestLedgerModel drives the ledger with random arms and removals over a few
// indexes, generations and fds, and after every step compares it with a
// plain model (a slice per fd, in arming order): get finds exactly the armed
// tags, an index held by one generation refuses another (ErrTagInUse), each
// fd's list holds its tags in arming order and nothing else, and the count
// matches. The backends rely on these to find a completion's tag and an
// fd's tags without a map or a search.
func TestLedgerModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var g ledger
		byFd := map[int][]uint64{} // the model: tags armed per fd, in order
		armed := map[uint64]int{}  // tag -> fd
		gen := map[uint64]uint64{} // index -> next generation to use
		rt.Repeat(map[string]func(*rapid.T){
			"add": func(rt *rapid.T) {
				idx := rapid.Uint64Range(1, 6).Draw(rt, "index")
				fd := rapid.IntRange(0, 3).Draw(rt, "fd")
				tag := gen[idx]<<TagIndexBits | idx
				_, held := armedIndex(armed, idx)
				rec, err := g.add(tag, fd, In)
				switch {
				case held && !errors.Is(err, ErrTagInUse):
					rt.Fatalf("add(%#x) on a held index: err %v, want ErrTagInUse", tag, err)
				case held:
					return
				case err != nil:
					rt.Fatalf("add(%#x, fd %d): %v", tag, fd, err)
				case rec.tag != tag || int(rec.fd) != fd:
					rt.Fatalf("add(%#x, fd %d) recorded %#x on fd %d", tag, fd, rec.tag, rec.fd)
				}
				gen[idx]++
				armed[tag] = fd
				byFd[fd] = append(byFd[fd], tag)
			},
			"remove": func(rt *rapid.T) {
				if len(armed) == 0 {
					rt.Skip("nothing armed")
				}
				tags := make([]uint64, 0, len(armed))
				for tag := range armed {
					tags = append(tags, tag)
				}
				slices.Sort(tags)
				tag := rapid.SampledFrom(tags).Draw(rt, "tag")
				rec := g.get(tag)
				if rec == nil {
					rt.Fatalf("get(%#x) = nil for an armed tag", tag)
				}
				g.remove(rec)
				fd := armed[tag]
				delete(armed, tag)
				byFd[fd] = slices.DeleteFunc(byFd[fd], func(x uint64) bool { return x == tag })
			},
			"": func(rt *rapid.T) {
				if g.n != len(armed) {
					rt.Fatalf("ledger counts %d armed, the model %d", g.n, len(armed))
				}
				for fd := 0; fd <= 3; fd++ {
					var got []uint64
					for i := g.first(fd); i != 0; i = g.next(i) {
						if len(got) > len(armed) {
							rt.Fatalf("fd %d's list loops", fd)
						}
						got = append(got, g.at(i).tag)
					}
					if !slices.Equal(got, byFd[fd]) {
						rt.Fatalf("fd %d's list %#x, want %#x (arming order)", fd, got, byFd[fd])
					}
				}
				for idx := uint64(1); idx <= 6; idx++ {
					for gn := uint64(0); gn <= gen[idx]; gn++ {
						tag := gn<<TagIndexBits | idx
						_, on := armed[tag]
						if rec := g.get(tag); (rec != nil) != on {
							rt.Fatalf("get(%#x) = %v, want armed %v", tag, rec, on)
						}
					}
				}
			},
		})
	})
}

// armedIndex reports the armed tag holding index idx, if any.
func armedIndex(armed map[uint64]int, idx uint64) (uint64, bool) {
	for tag := range armed {
		if tag&TagIndexMask == idx {
			return tag, true
		}
	}
	return 0, false
}

// TestEpollInterestFollowsTags arms and disarms tags with random interests
// on one fd and checks after every step that epoll's registration asks for
// exactly the union of what the armed tags ask for: more would wake the
// loop for readiness nobody waits on, less would lose a waiter's.
func TestEpollInterestFollowsTags(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		pp, err := NewEpoll()
		if err != nil {
			rt.Fatal(err)
		}
		p := pp.(*epollPoller)
		defer p.Close()
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			rt.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		fd := fds[0]
		armed := map[uint64]uint32{} // the model: tag -> interest
		next := uint64(1)
		rt.Repeat(map[string]func(*rapid.T){
			"arm": func(rt *rapid.T) {
				ev := rapid.SampledFrom([]uint32{In, Out, In | Out, Pri, In | RdHup, Out | Err}).Draw(rt, "events")
				if err := p.Arm(next, fd, ev); err != nil {
					rt.Fatalf("Arm: %v", err)
				}
				armed[next] = ev
				next++
			},
			"disarm": func(rt *rapid.T) {
				if len(armed) == 0 {
					rt.Skip("nothing armed")
				}
				tags := slices.Sorted(maps.Keys(armed))
				tag := rapid.SampledFrom(tags).Draw(rt, "tag")
				if !p.Disarm(tag) {
					rt.Fatalf("Disarm(%d) = false for an armed tag", tag)
				}
				delete(armed, tag)
			},
			"": func(rt *rapid.T) {
				var want uint32
				for _, ev := range armed {
					want |= ev &^ (Err | Hup)
				}
				var reg epollReg
				r := p.g.fds.find(fd)
				if r != nil {
					reg = r.reg
				}
				// fd has a record while it has a tag or a registration,
				// and not after: one left behind costs the poller a
				// record per fd number ever armed there.
				if len(armed) > 0 && r == nil || r != nil && r.empty() {
					rt.Fatalf("%d tags armed, fd record %+v", len(armed), r)
				}
				if got := reg.want(); got != want {
					rt.Fatalf("registration wants %#x, the armed tags %#x", got, want)
				}
				if len(armed) > 0 && (reg.state != regActive || reg.mask.mask() != want) {
					rt.Fatalf("registration %+v, want active for %#x", reg, want)
				}
			},
		})
	})
}

// TestUnsubmittedUntilTheSQEmpties: an arm's record says its SQE may still
// be in the SQ from its booking until an enter empties the SQ, and not a
// moment longer, however long the record then lives. Forget relies on the
// first half (an arm still queued when its fd closes would resolve the
// fd's next file); the second spares it an early submit per close.
func TestUnsubmittedUntilTheSQEmpties(t *testing.T) {
	runtime.LockOSThread() // a single-issuer ring: one thread enters it
	defer runtime.UnlockOSThread()
	p := testUring(t, Options{Backend: Uring})
	fd := testEventfd(t, 0)
	queued := func(tag uint64) bool {
		t.Helper()
		rec := p.rec(tag)
		if rec == nil {
			t.Fatalf("tag %#x not armed", tag)
		}
		return p.unsubmitted(rec)
	}
	evs := make([]Event, 8)
	if err := p.Arm(1, fd, In); err != nil {
		t.Fatal(err)
	}
	if !queued(1) {
		t.Fatal("an arm not yet handed to the kernel is not seen as queued")
	}
	if _, err := p.Wait(evs, 0); err != nil {
		t.Fatal(err)
	}
	if queued(1) {
		t.Fatal("an arm the kernel took is still seen as queued")
	}
	for round := range 3 {
		tag := uint64(2 + round)
		if err := p.Arm(tag, fd, In); err != nil {
			t.Fatal(err)
		}
		if !queued(tag) || queued(1) {
			t.Fatalf("round %d: queued %v for the new arm, %v for the old; want true, false", round, queued(tag), queued(1))
		}
		if n, err := p.Wait(evs, 0); err != nil || n != 0 {
			t.Fatalf("round %d: Wait = %d, %v; nothing is ready", round, n, err)
		}
		if queued(tag) {
			t.Fatalf("round %d: an arm the kernel took is still seen as queued", round)
		}
	}
	p.Forget(fd)
}

// TestIncShape: an incremental ring keeps the memory asked for, in
// buffers of 64 KiB where smaller ones were asked for, a power of two of
// them; rings with larger buffers, or under 64 KiB in all, keep their
// shape.
func TestIncShape(t *testing.T) {
	for _, tc := range []struct{ count, size, wantCount, wantSize int }{
		{256, 16 << 10, 64, 64 << 10}, // the reactor's default: 4 MiB
		{16, 16 << 10, 4, 64 << 10},
		{512, 12 << 10, 64, 64 << 10}, // 6 MiB: 96 buffers, rounded down to a power of two
		{8, 256, 8, 256},              // 2 KiB in all: as asked
		{4, 128 << 10, 4, 128 << 10},  // larger buffers: as asked
	} {
		c, s := incShape(tc.count, tc.size)
		if c != tc.wantCount || s != tc.wantSize {
			t.Errorf("incShape(%d, %d) = %d, %d; want %d, %d", tc.count, tc.size, c, s, tc.wantCount, tc.wantSize)
		}
	}
}

// TestCallerDisarmsKeepsNoFdRecord: with Options.CallerDisarms an io_uring
// poller arms, completes and disarms tags on a high fd number without a
// record for the number or list links for the tags (the ledger's fd
// records and links stay empty), while it still finds each tag and counts
// it; without it, both are made, and the fd's record is given back once
// its last tag ended.
func TestCallerDisarmsKeepsNoFdRecord(t *testing.T) {
	runtime.LockOSThread() // a single-issuer ring: one thread enters it
	defer runtime.UnlockOSThread()
	for _, callerDisarms := range []bool{false, true} {
		p := testUring(t, Options{Backend: Uring, CallerDisarms: callerDisarms})
		fd := testEventfd(t, 3000) // a high number: a record for it is plain to see
		evs := make([]Event, 8)
		for tag := uint64(1); tag <= 2; tag++ {
			if err := p.Arm(tag, fd, In); err != nil {
				t.Fatal(err)
			}
		}
		if p.g.get(1) == nil || p.g.get(2) == nil || p.g.n != 2 {
			t.Fatalf("CallerDisarms=%v: the ledger lost an armed tag (%d counted)", callerDisarms, p.g.n)
		}
		if got := p.g.fds.find(fd) != nil; got == callerDisarms {
			t.Fatalf("CallerDisarms=%v: a record for fd %d is %v", callerDisarms, fd, got)
		}
		if got := p.g.links.Cap() > 0; got == callerDisarms {
			t.Fatalf("CallerDisarms=%v: list links kept: %v", callerDisarms, got)
		}
		p.Disarm(1)
		p.Disarm(2)
		p.Forget(fd)
		seen := 0
		for seen < 2 {
			n, err := p.Wait(evs, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs[:n] {
				if !ev.Canceled {
					t.Fatalf("CallerDisarms=%v: %v, want canceled", callerDisarms, ev)
				}
				seen++
			}
		}
		if p.g.n != 0 {
			t.Fatalf("CallerDisarms=%v: %d tags still counted", callerDisarms, p.g.n)
		}
		if p.g.fds.find(fd) != nil || p.g.fds.n != 0 {
			t.Fatalf("CallerDisarms=%v: fd records kept after every tag ended (%d)", callerDisarms, p.g.fds.n)
		}
		p.Close()
	}
}

// TestFdRecsGiveBackAndReuse: an fd's record exists from make until
// releaseIfEmpty finds it holding nothing, a record that holds a tag or a
// registration is kept, and a released record is the next one made, zero,
// so records stay as many as the fds armed at once, whatever their
// numbers.
func TestFdRecsGiveBackAndReuse(t *testing.T) {
	var t0 fdRecs
	fds := []int{5, 4000, 70}
	for _, fd := range fds {
		if t0.find(fd) != nil {
			t.Fatalf("fd %d has a record before any make", fd)
		}
		t0.make(fd).tags.head = 1
	}
	if t0.n != 3 || t0.make(4000) != t0.find(4000) || t0.n != 3 {
		t.Fatalf("%d records for 3 fds, or make of a recorded fd made another", t0.n)
	}
	t0.releaseIfEmpty(70) // holds a tag: kept
	t0.find(5).tags.head = 0
	t0.find(5).reg.state = regIdle
	t0.releaseIfEmpty(5) // holds a registration: kept
	if t0.find(70) == nil || t0.find(5) == nil {
		t.Fatal("a record that holds something was given back")
	}
	t0.find(5).reg = epollReg{state: regNone, gen: 9, mask: packEv(In)} // DEL left its generation and mask
	t0.releaseIfEmpty(5)
	if t0.find(5) != nil || t0.n != 2 {
		t.Fatalf("an empty record was kept (%d records)", t0.n)
	}
	r := t0.make(6)
	if *r != (fdRec{}) || t0.n != 3 || t0.recs.Cap() != 256 {
		t.Fatalf("the reused record is %+v (%d records, %d rows), want zero, reused", *r, t0.n, t0.recs.Cap())
	}
	if t0.find(5) != nil || t0.find(6) != r {
		t.Fatal("the reused record still answers for its old fd, or not for its new one")
	}
}

// mapRecords is a caller's Records for tests: a record per live tag.
type mapRecords map[uint64]*TagRecord

func (m mapRecords) Record(tag uint64) *TagRecord { return m[tag] }

func (m mapRecords) Armed(f func(uint64)) {
	for tag := range m {
		f(tag)
	}
}

// TestRecordsKeepNoLedger: given Options.Records, an io_uring poller keeps
// its record of each armed tag in the caller's store and none of its own
// (16 bytes a tag): it arms, completes, disarms and, at Close, cancels and
// drains through the store; it refuses a tag the store does not know
// (ErrBadTag) or that is armed (ErrTagInUse); and each record is clear
// once its tag's last Event is out.
func TestRecordsKeepNoLedger(t *testing.T) {
	recs := mapRecords{}
	p := testUring(t, Options{Backend: Uring, Setup: UringCoop, CallerDisarms: true, Records: recs})
	efd := testEventfd(t, 0)
	for tag := uint64(1); tag <= 3; tag++ {
		recs[tag] = &TagRecord{}
	}
	if err := p.Arm(9, efd, In); !errors.Is(err, ErrBadTag) {
		t.Fatalf("Arm of a tag the caller does not know: %v, want ErrBadTag", err)
	}
	for tag := uint64(1); tag <= 3; tag++ {
		if err := p.Arm(tag, efd, In); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Arm(2, efd, In); !errors.Is(err, ErrTagInUse) {
		t.Fatalf("Arm of an armed tag: %v, want ErrTagInUse", err)
	}
	if p.g.tags.Cap() != 0 || p.g.n != 3 || p.rec(1) == nil || !recs[1].has(recArmed) || recs[1].events() != In {
		t.Fatalf("records: ledger rows %d, %d counted, tag 1's %+v", p.g.tags.Cap(), p.g.n, *recs[1])
	}
	evs := make([]Event, 8)
	got := map[uint64]Event{}
	collect := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(got) < want && time.Now().Before(deadline); {
			n, err := p.Wait(evs, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs[:n] {
				if _, dup := got[ev.Tag]; dup {
					t.Fatalf("a second Event for tag %d: %+v", ev.Tag, ev)
				}
				got[ev.Tag] = ev
			}
		}
	}
	p.Disarm(1) // in the SQ with its arm; the eventfd is not readable yet
	collect(1)
	unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) // tags 2 and 3 fire
	collect(3)
	if !got[1].Canceled || got[2].Events&In == 0 || got[3].Events&In == 0 {
		t.Fatalf("Events %+v: want 1 canceled, 2 and 3 readable", got)
	}
	for tag, r := range recs {
		if *r != (TagRecord{}) {
			t.Fatalf("tag %d's record %+v after its last Event, want clear", tag, *r)
		}
		if p.Disarm(tag) {
			t.Fatalf("Disarm(%d) after its last Event reported true", tag)
		}
	}
	// Close cancels what is still armed, found through the store.
	if err := p.Arm(1, efd, Out|In); err != nil { // the eventfd is readable: may fire at once
		t.Fatal(err)
	}
	var buf [8]byte
	unix.Read(efd, buf[:])
	if err := p.Arm(2, efd, Pri); err != nil { // never fires
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close with a tag armed in the caller's store: %v", err)
	}
	if p.g.n != 0 || recs[2].has(recArmed) {
		t.Fatalf("after Close: %d counted, tag 2's record %+v", p.g.n, *recs[2])
	}
}

// testUring opens an io_uring poller for a test, which it skips where
// io_uring is unavailable; the poller closes when the test ends (Close is
// idempotent, so a test may close it first).
func testUring(t *testing.T, opts Options) *uringPoller {
	t.Helper()
	pp, _, err := newUring(opts)
	if err != nil {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	p := pp.(*uringPoller)
	t.Cleanup(func() { p.Close() })
	return p
}

// testEventfd returns a non-blocking eventfd numbered at least atLeast, closed
// when the test ends.
func testEventfd(t *testing.T, atLeast int) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if atLeast > 0 {
		high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, atLeast)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = high
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
