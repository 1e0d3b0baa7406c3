package load_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/echotest"
	"github.com/oneshot-io/oneshot/cmd/echoload/internal/load"
)

// BenchmarkRun measures echoload itself against the in-test echo server:
// b.N messages per run, reported as msgs/s, p99 and CPU per message, so a
// change that makes the client dearer (and so the comparison's ceiling
// lower) shows. The server runs in this process, so "client-µs/msg" here
// is client and server together.
func BenchmarkRun(b *testing.B) {
	for _, bc := range []struct{ conns, size, pipeline int }{
		{1, 64, 1}, {100, 64, 1}, {100, 64, 8}, {10, 16 << 10, 1},
	} {
		b.Run(fmt.Sprintf("conns=%d/size=%d/pipeline=%d", bc.conns, bc.size, bc.pipeline), func(b *testing.B) {
			s, err := echotest.Listen("tcp", "", echotest.Fault{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cfg := load.Config{
				Network: "tcp", Address: s.Addr(), Conns: bc.conns, Size: bc.size,
				Pipeline: bc.pipeline, Messages: int64(max(b.N, bc.conns)), Timeout: 5 * time.Second,
			}
			b.ResetTimer()
			rep, err := load.Run(context.Background(), cfg)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if rep.Failed() {
				b.Fatalf("errors %v: %s", rep.Errors, rep.FirstError)
			}
			b.ReportMetric(rep.MsgsPerSec, "msgs/s")
			b.ReportMetric(rep.Latency.P99, "p99-µs")
			if rep.CPU != nil {
				b.ReportMetric(rep.CPU.ClientUSPerMsg, "client-µs/msg")
			}
		})
	}
}
