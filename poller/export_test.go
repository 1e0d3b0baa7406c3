package poller

// RecvSupport exposes the probe's decision to the external tests.
var RecvSupport = recvSupport
