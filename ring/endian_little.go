//go:build linux && !(ppc64 || s390x || mips || mips64)

package ring

// pollEvents returns events as the kernel reads sqe->poll32_events.
func pollEvents(events uint32) uint32 { return events }

// tailWord is the 32-bit word at offset 12 of a buffer ring: slot 0's bid
// (low half) and the ring's tail (high half).
func tailWord(bid0, tail uint16) uint32 { return uint32(bid0) | uint32(tail)<<16 }
