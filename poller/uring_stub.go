package poller

import "errors"

// newUring is replaced by the io_uring backend once ring/ lands.
func newUring(Options) (Poller, string, error) {
	return nil, "", errors.New("poller: io_uring backend not built yet")
}
