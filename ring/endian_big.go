//go:build linux && (ppc64 || s390x || mips || mips64)

package ring

// pollEvents returns events as the kernel reads sqe->poll32_events: on
// big-endian machines the kernel swaps the 16-bit halves (swahw32) so that
// the field overlays the legacy 16-bit poll_events; swap them first.
func pollEvents(events uint32) uint32 { return events<<16 | events>>16 }

// tailWord is the 32-bit word at offset 12 of a buffer ring: slot 0's bid
// (first half) and the ring's tail (second half).
func tailWord(bid0, tail uint16) uint32 { return uint32(bid0)<<16 | uint32(tail) }
