//go:build linux

package ring

// Hooks for the external tests in ring_test.

// Reason exposes the diagnosis text for table tests of every sysctl value.
var Reason = reason

// ForceTimeoutSQE makes SubmitAndWait use the TIMEOUT-SQE fallback of
// kernels without FeatExtArg, so that path is tested on new kernels too.
func ForceTimeoutSQE(r *Ring) { r.noExtArg = true }

// NewTwoMmaps is New, but maps the CQ ring on its own as kernels without
// FeatSingleMmap require.
func NewTwoMmaps(cfg Config) (*Ring, error) {
	cfg.twoMmaps = true
	return New(cfg)
}

// SingleMapping reports whether the SQ and CQ rings share one mapping.
func SingleMapping(r *Ring) bool {
	return len(r.cqMem) > 0 && &r.cqMem[0] == &r.sqMem[0]
}
