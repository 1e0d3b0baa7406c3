//go:build linux

package reactor

import (
	"math"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sockDefaults is what a listener or dialer applies to each new TCP
// connection.
type sockDefaults struct {
	noDelay   bool
	keepAlive time.Duration // <= 0: keepalive off
}

// sockDefaultsOf resolves the configured options: noDelay ToggleDefault is
// on; keepAlive 0 is DefaultKeepAlive and negative is off.
func sockDefaultsOf(noDelay Toggle, keepAlive time.Duration) sockDefaults {
	s := sockDefaults{noDelay: noDelay != ToggleOff, keepAlive: keepAlive}
	if keepAlive == 0 {
		s.keepAlive = DefaultKeepAlive
	}
	return s
}

// apply sets the options on a TCP socket. Errors are not fatal to the
// connection (net ignores them too): the first is returned for tests.
func (s sockDefaults) apply(fd int) error {
	err := setNoDelay(fd, s.noDelay)
	var kerr error
	if s.keepAlive > 0 {
		kerr = setKeepAlivePeriod(fd, s.keepAlive)
		if kerr == nil {
			kerr = setKeepAlive(fd, true)
		}
	} else {
		kerr = setKeepAlive(fd, false)
	}
	if err == nil {
		err = kerr
	}
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func setNoDelay(fd int, on bool) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, boolInt(on)))
}

func setKeepAlive(fd int, on bool) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, boolInt(on)))
}

// setKeepAlivePeriod sets the idle time before the first probe and the
// interval between probes to d (rounded up to whole seconds, at least
// one), and net's probe count.
func setKeepAlivePeriod(fd int, d time.Duration) error {
	secs := int(max(ceilSeconds(d), 1))
	for _, o := range []struct{ opt, v int }{
		{unix.TCP_KEEPIDLE, secs}, {unix.TCP_KEEPINTVL, secs}, {unix.TCP_KEEPCNT, keepAliveCount},
	} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, o.opt, o.v); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

// setKeepAliveConfig is net.TCPConn.SetKeepAliveConfig's: a zero field
// takes net's default, a negative one leaves the option alone.
func setKeepAliveConfig(fd int, cfg net.KeepAliveConfig) error {
	if err := setKeepAlive(fd, cfg.Enable); err != nil {
		return err
	}
	secs := func(d time.Duration) int64 {
		if d == 0 {
			d = DefaultKeepAlive
		}
		return ceilSeconds(d)
	}
	count := int64(cfg.Count)
	if count == 0 {
		count = keepAliveCount
	}
	for _, o := range []struct {
		opt  int
		skip bool
		v    int64
	}{
		{unix.TCP_KEEPIDLE, cfg.Idle < 0, secs(cfg.Idle)},
		{unix.TCP_KEEPINTVL, cfg.Interval < 0, secs(cfg.Interval)},
		{unix.TCP_KEEPCNT, cfg.Count < 0, count},
	} {
		if o.skip {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, o.opt, int(min(o.v, math.MaxInt32))); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

func setLinger(fd, sec int) error {
	l := unix.Linger{Onoff: 1, Linger: int32(sec)}
	if sec < 0 {
		l = unix.Linger{}
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &l))
}

func setSockBuf(fd, opt, bytes int) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, bytes))
}

// ceilSeconds is d in whole seconds, rounded up, as net rounds keepalive
// times.
func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
