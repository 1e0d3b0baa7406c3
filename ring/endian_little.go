//go:build linux && !(ppc64 || s390x || mips || mips64)

package ring

// pollEvents returns events as the kernel reads sqe->poll32_events.
func pollEvents(events uint32) uint32 { return events }
