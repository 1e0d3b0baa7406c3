//go:build !linux

// echod serves on oneshot's reactor, which runs on Linux only (epoll or
// io_uring). Elsewhere it says so and exits 1, so that a go install on a
// laptop gives a clear answer instead of a build error.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "echod: runs on Linux only (epoll or io_uring), not on %s\n", runtime.GOOS)
	os.Exit(1)
}
