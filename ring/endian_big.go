//go:build linux && (ppc64 || s390x || mips || mips64)

package ring

// pollEvents returns events as the kernel reads sqe->poll32_events: on
// big-endian machines the kernel swaps the 16-bit halves (swahw32) so that
// the field overlays the legacy 16-bit poll_events; swap them first.
func pollEvents(events uint32) uint32 { return events<<16 | events>>16 }
