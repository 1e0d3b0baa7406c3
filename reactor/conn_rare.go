//go:build linux

package reactor

// connRare is the part of a Conn that only a closing, failed, paused or
// oddly addressed one needs, allocated the first time one of its fields is set
// (more), so that an idle Conn does not carry it. Each field keeps the
// guard it would have in the Conn.
type connRare struct {
	werr       error  // guarded by c.mu: the write error that condemned c
	closeErr   error  // loop: the reason the drain began (nil: clean)
	lingerBy   int64  // loop: nanotime at which lingering ends
	lingerNext int64  // loop: nanotime of a lingering Conn's next look; 0 = none
	shutLeft   int32  // loop: bytes Shutdown found received and still to deliver
	shutReq    bool   // loop: Shutdown asked; waits for reading to resume if paused
	wrDone     bool   // loop: shutdown(SHUT_WR) was made
	peerZone   uint32 // constant: an IPv6 peer's zone id (famInet6)
	peerName   string // constant: a named Unix peer's name (famUnix)
	// held: loop; what the receive brought after a pause (conn_recv.go),
	// made on first use, dropped once delivered. Here rather than in a
	// map of the loop's: a receive's completion makes no map operation.
	held *heldInput
}

// more returns c's rare part, made on first use. Any goroutine: the
// first to publish one wins, so a field set through it is never lost.
func (c *Conn) more() *connRare {
	if x := c.rare.Load(); x != nil {
		return x
	}
	x := new(connRare)
	if c.rare.CompareAndSwap(nil, x) {
		return x
	}
	return c.rare.Load()
}

// failWrite records err as the write error that condemned c (under mu).
func (c *Conn) failWrite(err error) {
	c.more().werr = err
	c.st.set(bWriteFailed, true)
}

// writeErr returns the write error that condemned c, if any (under mu).
// The word says whether there is one, so that every Write does not load
// rare, on the Conn's second cache line (TestConnHotLine).
func (c *Conn) writeErr() error {
	if !c.st.has(bWriteFailed) {
		return nil
	}
	return c.rare.Load().werr
}

// closeReason returns why c's drain began (nil: a clean close).
func (c *Conn) closeReason() error {
	if x := c.rare.Load(); x != nil {
		return x.closeErr
	}
	return nil
}

// shutAsked reports whether Listener.Shutdown reached c.
func (c *Conn) shutAsked() bool {
	x := c.rare.Load()
	return x != nil && x.shutReq
}
