package poller_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
	"github.com/oneshot-io/oneshot/poller"
	"github.com/oneshot-io/oneshot/ring"
)

// TestSeccompFallback runs itself again in a child whose seccomp filter makes
// io_uring_setup fail (as Docker's default profile does): auto must pick
// epoll and name the errno, uring must fail with it.
func TestSeccompFallback(t *testing.T) {
	if errno, child := seccomp.Denied(); child {
		fallbackChild(t, errno)
		return
	}
	for _, errno := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		t.Run(unix.ErrnoName(errno), func(t *testing.T) {
			out, err := seccomp.Command(errno, "TestSeccompFallback").CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("--- PASS: TestSeccompFallback")) {
				t.Fatalf("the child did not run the test:\n%s", out)
			}
			for line := range strings.Lines(string(out)) {
				if strings.Contains(line, "select_test.go") {
					t.Log(strings.TrimSpace(line))
				}
			}
		})
	}
}

func fallbackChild(t *testing.T, errno unix.Errno) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	name := unix.ErrnoName(errno)

	p, sel, err := poller.Open(poller.Options{})
	if err != nil {
		t.Fatalf("auto under seccomp: %v", err)
	}
	defer p.Close()
	if sel.Requested != poller.Auto || sel.Backend != poller.Epoll || p.Backend() != poller.Epoll {
		t.Fatalf("auto under seccomp: %+v, want epoll", sel)
	}
	if !errors.Is(sel.UringErr, errno) || !errors.Is(sel.UringErr, ring.ErrUnavailable) {
		t.Fatalf("UringErr %v, want ring.ErrUnavailable wrapping %s", sel.UringErr, name)
	}
	if !strings.Contains(sel.Reason, name) || !strings.Contains(sel.Reason, "using epoll") {
		t.Fatalf("Reason %q does not name %s and the fallback", sel.Reason, name)
	}
	t.Logf("auto: %s", sel)

	_, sel, err = poller.Open(poller.Options{Backend: poller.Uring})
	if err == nil || !errors.Is(err, errno) || !errors.Is(err, ring.ErrUnavailable) {
		t.Fatalf("uring under seccomp: %v, want an error wrapping %s", err, name)
	}
	if !strings.Contains(err.Error(), name) || sel.UringErr == nil {
		t.Fatalf("uring under seccomp: %q does not name %s (sel %+v)", err, name, sel)
	}
	t.Logf("uring: %v", err)
}

func TestOpen(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, err := poller.Open(poller.Options{Backend: "kqueue"}); !errors.Is(err, poller.ErrUnknownBackend) {
		t.Fatalf("Open(kqueue) = %v, want ErrUnknownBackend", err)
	}
	cases := []struct {
		req  poller.Backend
		want poller.Backend // "" for "uring if available, else epoll"
	}{
		{"", ""},
		{poller.Auto, ""},
		{poller.Epoll, poller.Epoll},
	}
	for _, c := range cases {
		p, sel, err := poller.Open(poller.Options{Backend: c.req})
		if err != nil {
			t.Fatalf("Open(%q): %v", c.req, err)
		}
		want := c.want
		if want == "" {
			want = poller.Uring
			if sel.UringErr != nil {
				want = poller.Epoll
			}
		}
		if sel.Backend != want || p.Backend() != want || sel.Reason == "" {
			t.Errorf("Open(%q): %+v, want %s with a reason", c.req, sel, want)
		}
		if (sel.Backend == poller.Uring) != (sel.UringFlags != "") {
			t.Errorf("Open(%q): UringFlags %q on %s", c.req, sel.UringFlags, sel.Backend)
		}
		t.Logf("Open(%q): %s [%s]", c.req, sel, sel.UringFlags)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// noRecords is a Records that knows no tag.
type noRecords struct{}

func (noRecords) Record(uint64) *poller.TagRecord { return nil }
func (noRecords) Armed(func(uint64))              {}

// TestOpenRefusesRecordsWithoutCallerDisarms: a caller keeping the poller's
// tag records must also keep its fd lists (CallerDisarms), which the
// poller would otherwise keep in the ledger it no longer has; Open says so
// rather than keep a ledger quietly, on every backend asked for.
func TestOpenRefusesRecordsWithoutCallerDisarms(t *testing.T) {
	for _, b := range []poller.Backend{poller.Auto, poller.Uring, poller.Epoll} {
		p, _, err := poller.Open(poller.Options{Backend: b, Records: noRecords{}})
		if !errors.Is(err, poller.ErrBadOptions) {
			if p != nil {
				p.Close()
			}
			t.Fatalf("%s: Open with Records and no CallerDisarms: %v, want ErrBadOptions", b, err)
		}
	}
}
