package load_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/load"
)

// ExampleRun loads an echo server with 100 connections for ten seconds and
// prints the summary; a report with errors means some echo came back wrong,
// short, reset or late. (Compile-only: it needs a server.)
func ExampleRun() {
	rep, err := load.Run(context.Background(), load.Config{
		Network: "tcp", Address: "127.0.0.1:7007",
		Conns: 100, Size: 64, Pipeline: 1,
		Duration: 10 * time.Second, Warmup: time.Second, Timeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	rep.WriteSummary(os.Stdout)
	if rep.Failed() {
		fmt.Println("errors:", rep.Errors)
	}
}

// ExampleRun_openLoop sends 20,000 messages/s whatever the server does, so
// a server that stalls for 100 ms shows as ~2,000 messages each up to
// 100 ms late instead of one slow message. (Compile-only.)
func ExampleRun_openLoop() {
	rep, err := load.Run(context.Background(), load.Config{
		Network: "tcp", Address: "127.0.0.1:7007",
		Conns: 50, Size: 64, Pipeline: 1, Rate: 20000,
		Duration: 10 * time.Second, Timeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("p99.9 %.0f µs, send lag max %.0f µs\n", rep.Latency.P999, rep.SendLag.Max)
}
