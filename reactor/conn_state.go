//go:build linux

package reactor

import (
	"fmt"
	"strings"
)

// connPhase is where a Conn is in its life. Only the Conn's loop moves it,
// and only along an edge of the table below, through setPhase, the one
// place that carries out what a move owes (the Listener's Paused count;
// taking c.mu when Write's answer changes; CloseTimeout's bound on a pause
// Shutdown is waiting for). Other goroutines read it
// (Write, CloseWrite, Close under c.mu; it is atomic) but never write it:
// they ask the loop through a task, or through the tasks bits of c's
// state word while a handler call runs (connWord.ask).
//
//	phase       reads           Write     output
//	----------  --------------  --------  -------------------------------
//	open        yes             accepted  flushed as the socket takes it
//	paused      no (backlog)    accepted  flushed; reading resumes at none
//	peerEOF     no (peer done)  accepted  flushed; an EOFHandler closes
//	draining    no              refused   flushed, then linger or close
//	lingering   discarded       refused   none left; write side shut
//	closed      -               refused   discarded; fd closed, OnClose ran
//
// Every move, and what makes the loop take it (TestConnPhaseTable parses
// this table and compares it with connEdges):
//
//	from       to         on
//	---------  ---------  ------------------------------------------------------
//	open       paused     pending output above MaxPending after OnData
//	paused     open       output all flushed
//	open       peerEOF    a read returned EOF and the handler is an EOFHandler
//	open       draining   Close; the peer's EOF (plain Handler); Shutdown, once what was received was served
//	paused     draining   Close (Shutdown waits for open: what was received is served first)
//	peerEOF    draining   Close; Shutdown
//	draining   lingering  output flushed to a TCP peer that has not sent EOF
//	open       closed     CloseNow; a read, write or arm error; a deadline; the reactor's Close
//	paused     closed     CloseNow; an error; a deadline; the reactor's Close; Shutdown's context
//	peerEOF    closed     CloseNow; an error; a deadline; the reactor's Close; Shutdown's context
//	draining   closed     output flushed (peer at EOF, Unix socket, or LingerTimeout < 0); an error; CloseTimeout; CloseNow
//	lingering  closed     the peer's EOF; all output acknowledged; LingerTimeout; an error; CloseNow
//
// Any other move is a bug in this package and panics.
type connPhase uint32

const (
	phOpen connPhase = iota
	phPaused
	phPeerEOF
	phDraining
	phLingering
	phClosed
	numPhases
)

var phaseNames = [numPhases]string{"open", "paused", "peerEOF", "draining", "lingering", "closed"}

func (p connPhase) String() string {
	if p < numPhases {
		return phaseNames[p]
	}
	return fmt.Sprintf("connPhase(%d)", uint32(p))
}

// writable reports whether Write accepts bytes in p.
func (p connPhase) writable() bool { return p <= phPeerEOF }

// connEdges[from][to] holds the moves of the table above.
var connEdges = func() (e [numPhases][numPhases]bool) {
	for _, m := range [...][2]connPhase{
		{phOpen, phPaused}, {phPaused, phOpen}, {phOpen, phPeerEOF},
		{phOpen, phDraining}, {phPaused, phDraining}, {phPeerEOF, phDraining},
		{phDraining, phLingering},
		{phOpen, phClosed}, {phPaused, phClosed}, {phPeerEOF, phClosed},
		{phDraining, phClosed}, {phLingering, phClosed},
	} {
		e[m[0]][m[1]] = true
	}
	return e
}()

// phase returns c's phase. Any goroutine.
func (c *Conn) phase() connPhase { return c.st.phase() }

// inCall reports whether the loop is inside a handler call for c. Any
// goroutine.
func (c *Conn) inCall() bool { return c.st.has(bInCall) }

// setPhase moves c to phase to (the loop only). A move that changes what
// Write answers is made under c.mu, so that a Write holding the lock sees
// the phase before or after the move, never in between; finish, which
// must also drop the output in the same critical section, holds c.mu and
// calls setPhaseLocked.
func (c *Conn) setPhase(to connPhase) {
	if c.phase().writable() != to.writable() {
		c.mu.Lock()
		c.setPhaseLocked(to)
		c.mu.Unlock()
	} else {
		c.setPhaseLocked(to)
	}
	if to == phPaused && c.shutAsked() {
		// Shutdown's own last read (shutdownRead) may be what paused c,
		// after the sweep that found it open: its wait is bounded all
		// the same.
		c.boundShutdown()
	}
}

func (c *Conn) setPhaseLocked(to connPhase) {
	from := c.phase()
	if !connEdges[from][to] {
		panic(fmt.Sprintf("reactor: conn fd %d: %v → %v is not a Conn transition", c.fd, from, to))
	}
	if from == phPaused {
		c.ln.paused.Add(-1)
	}
	if to == phPaused {
		c.ln.paused.Add(1)
	}
	c.st.setPhase(to)
}

// edgesString renders connEdges as "from→to" pairs, for tests.
func edgesString() string {
	var b strings.Builder
	for from := range numPhases {
		for to := range numPhases {
			if connEdges[from][to] {
				fmt.Fprintf(&b, "%v→%v\n", from, to)
			}
		}
	}
	return b.String()
}
