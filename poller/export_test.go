package poller

import "github.com/oneshot-io/oneshot/ring"

// RecvSupport exposes the probe's decision to the external tests.
var RecvSupport = recvSupport

// RecvBufs exposes the registration of receive buffers, with its hook.
var RecvBufs = recvBufs

// SetRecvLimitSupport replaces the probe of RecvOptions.Limit until the
// returned restore is called.
func SetRecvLimitSupport(f func(*ring.Ring, uint16) (bool, string, error)) (restore func()) {
	old := recvLimitSupport
	recvLimitSupport = f
	return func() { recvLimitSupport = old }
}
