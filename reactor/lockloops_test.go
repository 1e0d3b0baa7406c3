//go:build linux

package reactor_test

import (
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// tidEcho echoes, noting the OS thread each handler call ran on, per Conn.
type tidEcho struct {
	mu   sync.Mutex
	tids map[*reactor.Conn]map[int]bool
}

func (h *tidEcho) OnOpen(*reactor.Conn) {}

func (h *tidEcho) OnData(c *reactor.Conn, b []byte) {
	tid := unix.Gettid()
	h.mu.Lock()
	if h.tids[c] == nil {
		h.tids[c] = map[int]bool{}
	}
	h.tids[c][tid] = true
	h.mu.Unlock()
	c.Write(b)
}

func (h *tidEcho) OnClose(*reactor.Conn, error) {}

// TestLockLoops: with Config.LockLoops every turn of a loop runs on one OS
// thread, so each Conn's handler calls (which run on its loop) all see the
// same thread, while goroutines that sleep and wake keep the runtime's
// other threads busy picking up whatever is runnable. Unlocked, the loops
// move between threads under the same churn (the check that this test can
// fail: with 2 CPUs, every run of the unlocked row saw a Conn's calls on
// several; with GOMAXPROCS 1 they mostly do not, and that row skips).
func TestLockLoops(t *testing.T) {
	for _, b := range backends {
		for _, locked := range []bool{true, false} {
			t.Run(name(b)+map[bool]string{true: "/locked", false: "/unlocked"}[locked], func(t *testing.T) {
				if !locked && runtime.GOMAXPROCS(0) < 2 {
					// One P: the loops mostly keep the thread that holds it.
					t.Skip("GOMAXPROCS 1: unlocked loops rarely change threads, so this row could not show they do")
				}
				r, err := reactor.New(reactor.Config{Backend: b.kind, Loops: 2, LockLoops: locked})
				if b.kind == reactor.BackendUring && errors.Is(err, reactor.ErrUnavailable) {
					t.Skipf("io_uring unavailable here: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				h := &tidEcho{tids: map[*reactor.Conn]map[int]bool{}}
				ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()

				var stop atomic.Bool
				var churn sync.WaitGroup
				for range 2 * runtime.GOMAXPROCS(0) {
					churn.Add(1)
					go func() {
						defer churn.Done()
						for !stop.Load() {
							time.Sleep(20 * time.Microsecond)
							for range 100 {
								runtime.Gosched()
							}
						}
					}()
				}
				var clients sync.WaitGroup
				for range 8 {
					c := dial(t, ln)
					clients.Add(1)
					go func() {
						defer clients.Done()
						c.SetDeadline(time.Now().Add(20 * time.Second))
						msg, got := []byte("ping"), make([]byte, 4)
						for range 100 {
							if _, err := c.Write(msg); err != nil {
								t.Error(err)
								return
							}
							if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
								t.Errorf("echo: %q, %v", got, err)
								return
							}
						}
					}()
				}
				clients.Wait()
				stop.Store(true)
				churn.Wait()

				h.mu.Lock()
				defer h.mu.Unlock()
				if len(h.tids) != 8 {
					t.Fatalf("%d Conns had handler calls, want 8", len(h.tids))
				}
				moved := 0
				for _, tids := range h.tids {
					if len(tids) > 1 {
						moved++
					}
				}
				switch {
				case locked && moved > 0:
					t.Errorf("LockLoops: %d of 8 Conns had their handler calls on more than one OS thread", moved)
				case !locked && moved == 0:
					t.Errorf("unlocked, no Conn's handler calls moved between threads under the churn: the locked row proves nothing")
				}
				t.Logf("Conns whose calls ran on more than one thread: %d of 8", moved)
			})
		}
	}
}
