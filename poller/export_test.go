package poller

// RecvSupport exposes the probe's decision to the external tests.
var RecvSupport = recvSupport

// RecvBufs exposes the registration of receive buffers, with its hook.
var RecvBufs = recvBufs
