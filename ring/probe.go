//go:build linux

package ring

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe is the kernel's answer to IORING_REGISTER_PROBE: which opcodes it
// supports.
type Probe struct {
	lastOp    Opcode
	supported [probeMaxOps / 64]uint64 // bit op set when op is supported
}

// Probe asks the kernel which opcodes it supports (5.6+). On older kernels
// it returns an *UnavailableError wrapping EINVAL.
func (r *Ring) Probe() (*Probe, error) {
	if r.closed {
		return nil, ErrClosed
	}
	var buf probeBuf // the kernel insists on a zeroed buffer
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerProbe,
		uintptr(unsafe.Pointer(&buf)), probeMaxOps, 0, 0)
	if errno != 0 {
		if errno == unix.EINVAL {
			return nil, &UnavailableError{Op: "probe", Errno: errno,
				Reason: "the kernel cannot report its opcodes (IORING_REGISTER_PROBE needs Linux 5.6)"}
		}
		return nil, fmt.Errorf("ring: io_uring_register(PROBE): %w", errno)
	}
	p := &Probe{lastOp: Opcode(buf.hdr.lastOp)}
	for i := 0; i < int(buf.hdr.opsLen) && i < probeMaxOps; i++ {
		op := buf.ops[i]
		if op.flags&probeOpSupported != 0 {
			p.supported[op.op/64] |= 1 << (op.op % 64)
		}
	}
	return p, nil
}

// Supports reports whether the kernel supports op.
func (p *Probe) Supports(op Opcode) bool {
	return p.supported[op/64]&(1<<(op%64)) != 0
}

// LastOp returns the highest opcode the kernel knows.
func (p *Probe) LastOp() Opcode { return p.lastOp }

// Check reports whether io_uring can be used here with every opcode in ops:
// it sets up a tiny ring, probes it and closes it. It returns nil, or an
// *UnavailableError (errors.Is ErrUnavailable) whose Reason says what to do.
func Check(ops ...Opcode) error {
	r, err := New(Config{Entries: 2})
	if err != nil {
		return err
	}
	defer r.Close()
	if len(ops) == 0 {
		return nil
	}
	p, err := r.Probe()
	if err != nil {
		return err
	}
	var missing []Opcode
	for _, op := range ops {
		if !p.Supports(op) {
			missing = append(missing, op)
		}
	}
	if len(missing) > 0 {
		return missingOpcodes(missing)
	}
	return nil
}
