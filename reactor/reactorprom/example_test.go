package reactorprom_test

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oneshot-io/oneshot/reactor"
	"github.com/oneshot-io/oneshot/reactor/reactorprom"
)

// A service registers the reactor's collector, and its listeners', in its
// own registry and serves them with promhttp.
func ExampleNew() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	ln, err := r.Listen("tcp", "127.0.0.1:0", echo{}, reactor.ListenConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()

	col := reactorprom.New(r)
	col.AddListener("echo", ln)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	mfs, _ := reg.Gather()
	fmt.Println(len(mfs), "metric families")
	// Output: 27 metric families
}
