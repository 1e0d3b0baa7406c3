package main_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/echotest"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// TestProgressOnTerminal checks that the live progress line (drawn with
// an erase-line escape) appears when stdout is a terminal and not with
// --quiet.
func TestProgressOnTerminal(t *testing.T) {
	s, err := echotest.Listen("tcp", "", echotest.Fault{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, tc := range []struct {
		name     string
		extra    []string
		progress bool
	}{
		{"terminal", nil, true},
		{"quiet", []string{"--quiet"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master, slave, err := openPTY()
			if err != nil {
				t.Skipf("no pseudo-terminal here: %v", err)
			}
			defer master.Close()
			args := append([]string{"--addr", s.Addr(), "--duration", "1500ms", "--warmup", "0s"}, tc.extra...)
			cmd := command(t, args...)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = slave, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			out := make(chan string)
			go func() {
				b, _ := io.ReadAll(master) // ends with EIO once the child has exited
				out <- string(b)
			}()
			werr := cmd.Wait()
			got := <-out
			if werr != nil {
				t.Fatalf("echoload: %v: %s", werr, stderr.String())
			}
			if has := strings.Contains(got, "\x1b[K") && strings.Contains(got, "msgs/s"); has != tc.progress {
				t.Fatalf("progress line drawn: %v, want %v; output %q", has, tc.progress, got)
			}
			if !strings.Contains(got, "errors      none") {
				t.Fatalf("no summary on the terminal: %q", got)
			}
		})
	}
}
