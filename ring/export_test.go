//go:build linux

package ring

// Hooks for the external tests in ring_test.

// Reason exposes the diagnosis text for table tests of every sysctl value.
var Reason = reason

// ForceTimeoutSQE makes SubmitAndWait use the TIMEOUT-SQE fallback of
// kernels without FeatExtArg, so that path is tested on new kernels too.
func ForceTimeoutSQE(r *Ring) { r.noExtArg = true }
