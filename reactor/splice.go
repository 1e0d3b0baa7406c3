//go:build linux

package reactor

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A NetConn's ReadFrom of a stream socket (another NetConn, a
// net.TCPConn, a net.UnixConn: what a proxy's io.Copy hands it) moves the
// bytes with splice(2), socket to pipe to socket, as net.TCPConn's does,
// so that they never cross into this process: the kernel moves the
// socket's pages into the pipe and out again.
//
// Each round drains what the source has, up to the pipe's capacity,
// parking on the source (its RawConn's Read: the reactor for a NetConn,
// Go's netpoller for net's) until some is there, then pumps all of it
// into this socket, parking on the reactor while that is full (the write
// deadline and Close end it there). The pipe is empty between rounds, so
// a splice into it that would block means the source has nothing, never
// that the pipe is full. Bytes a failed pump leaves in the pipe were read
// from the source and are lost with it, as those in io.Copy's buffer
// would be; written counts only what this socket took.
//
// NetConn has no WriteTo, on purpose. A type that embeds a *NetConn and
// reads through its own Read (a protocol sniffer's bufio.Reader holding
// peeked bytes) would inherit it, and io.Copy from that type would call
// it and read the socket past the peeked bytes, losing them: net.TCPConn
// does that since its WriteTo came in Go 1.22 (go1.26: io.Copy of such a
// wrapper with "HEADER|" peeked yields only "body"). So io.Copy(w,
// netConn) reads through a buffer unless w is a NetConn, whose ReadFrom
// splices: io.Copy(netConn, r) is where splicing happens.
// TestNetConnReadFromWrapperReads fails if a WriteTo appears.

// maxSplice bounds one drain, and is the pipe size asked for.
const maxSplice = 1 << 20

// splicePipe is a pipe a ReadFrom moves bytes through; n is what it holds.
type splicePipe struct {
	r, w int
	n    int
}

func newSplicePipe() (*splicePipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	// Best effort: a pipe of the default 64 KiB takes 16 drains a MiB;
	// pipe-max-size may refuse more to an unprivileged process.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSplice)
	return &splicePipe{r: fds[0], w: fds[1]}, nil
}

func (p *splicePipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool keeps a few empty pipes for the next ReadFrom: a pipe costs
// three system calls to make and two to close, as much as a small copy
// through a buffer. Reactor.Close closes them; a pipe given back after
// that is closed at once.
type pipePool struct {
	mu     sync.Mutex
	free   []*splicePipe // guarded by mu
	closed bool          // guarded by mu
}

// maxFreePipes bounds the pipes kept (two descriptors each).
const maxFreePipes = 8

func (pp *pipePool) get() (*splicePipe, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 && !pp.closed {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	return newSplicePipe()
}

// put keeps p if it is empty and there is room, else closes it: a pipe
// holding bytes would hand them to the next ReadFrom.
func (pp *pipePool) put(p *splicePipe) {
	pp.mu.Lock()
	if p.n == 0 && !pp.closed && len(pp.free) < maxFreePipes {
		pp.free = append(pp.free, p)
		p = nil
	}
	pp.mu.Unlock()
	if p != nil {
		p.close()
	}
}

func (pp *pipePool) close() {
	pp.mu.Lock()
	free := pp.free
	pp.free, pp.closed = nil, true
	pp.mu.Unlock()
	for _, p := range free {
		p.close()
	}
}

// spliceFrom moves what r yields into fd with splice(2) where r is a
// stream socket, or an *io.LimitedReader of one (whose N goes down by what
// was written); handled is false, with nothing moved, where it is not.
func (fd *netFD) spliceFrom(r io.Reader) (written int64, handled bool, err error) {
	remain := int64(-1) // to the source's end of stream
	lr, limited := r.(*io.LimitedReader)
	if limited {
		if lr.N <= 0 {
			return 0, true, nil
		}
		remain, r = lr.N, lr.R
	}
	sc, ok := r.(syscall.Conn)
	if !ok || !spliceable(r) {
		return 0, false, nil
	}
	src, err := sc.SyscallConn()
	if err != nil || !streamSocket(src) {
		return 0, false, nil
	}
	if err := fd.prepare(&fd.wr); err != nil {
		return 0, true, err
	}
	p, perr := fd.r.pipes.get()
	if perr != nil {
		return 0, false, nil // no pipe (descriptors ran out): io.Copy's path
	}
	defer fd.r.pipes.put(p)
	var in *netFD // a NetConn source's bytes count for its listener
	if nc, ok := r.(*NetConn); ok {
		in = nc.fd
	}
	written, handled, err = fd.spliceRounds(src, in, p, remain)
	if limited {
		lr.N -= written
	}
	return written, handled, err
}

// spliceRounds is spliceFrom's loop. It holds fd (a reference, the write
// lock) only while it pumps, as net's does: a Close or a write deadline
// while it waits for the source ends it at the next pump, and the Close
// returns at once.
func (fd *netFD) spliceRounds(src syscall.RawConn, in *netFD, p *splicePipe, remain int64) (written int64, handled bool, err error) {
	for remain != 0 {
		chunk := maxSplice
		if remain > 0 && remain < int64(chunk) {
			chunk = int(remain)
		}
		n, err := p.drain(src, in, chunk)
		switch {
		case err != nil && written == 0 && (err == unix.EINVAL || err == unix.ENOSYS):
			return 0, false, nil // a socket splice cannot read: io.Copy's path
		case err != nil:
			return written, true, wrapSplice(err)
		case n == 0:
			return written, true, nil // the source's end of stream
		}
		if remain > 0 {
			remain -= int64(n)
		}
		m, err := fd.pump(p)
		written += m
		if err != nil {
			return written, true, err
		}
	}
	return written, true, nil
}

// drain splices up to max bytes from src into the empty pipe p, waiting
// until src has some (or its end of stream: 0). An error from the wait is
// the source's: its deadline, or its Close.
func (p *splicePipe) drain(src syscall.RawConn, in *netFD, max int) (int, error) {
	var n int64
	var serr error
	werr := src.Read(func(s uintptr) bool {
		for {
			n, serr = unix.Splice(int(s), nil, p.w, nil, max, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if serr != unix.EINTR {
				if serr == nil && in != nil {
					in.countIn(int(n)) // under the source's reference
				}
				return serr != unix.EAGAIN // the pipe is empty: the source is
			}
		}
	})
	if werr != nil {
		return 0, werr // the wait's: f's last try found nothing (EAGAIN)
	}
	if serr != nil {
		return 0, serr
	}
	p.n = int(n)
	return int(n), nil
}

// pump splices everything in p into fd, parking while fd's socket is full.
func (fd *netFD) pump(p *splicePipe) (written int64, err error) {
	if !fd.ref.incref() {
		return 0, net.ErrClosed
	}
	defer fd.decref()
	defer func() { fd.countOut(written) }()
	fd.wmu.Lock()
	defer fd.wmu.Unlock()
	if err := fd.prepare(&fd.wr); err != nil {
		return 0, err
	}
	for p.n > 0 {
		n, err := unix.Splice(p.r, nil, fd.sysfd, nil, p.n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if n > 0 {
			written += n
			p.n -= int(n)
		}
		switch {
		case err == nil && n == 0:
			return written, io.ErrUnexpectedEOF // a pipe holding bytes yields none
		case err == nil, err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := fd.wait(&fd.wr, Out, true); err != nil {
				return written, err
			}
		default:
			return written, os.NewSyscallError("splice", err)
		}
	}
	return written, nil
}

// wrapSplice names a drain's system-call failure as net does; the
// source's own errors (its deadline, its Close) pass as its wait gave
// them, less the source's *net.OpError (ReadFrom wraps in its own).
func wrapSplice(err error) error {
	if errno, ok := err.(unix.Errno); ok {
		return os.NewSyscallError("splice", errno)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// spliceable: r's Read is the socket's own read(2), so splice may stand in
// for it. A type that merely embeds a conn (and so has SyscallConn) may
// have its own Read (a bufio.Reader holding peeked bytes); net likewise
// splices only from its own concrete types.
func spliceable(r io.Reader) bool {
	switch r.(type) {
	case *NetConn, *net.TCPConn, *net.UnixConn, *os.File:
		return true
	}
	t := reflect.TypeOf(r) // io.Copy's wrappers from TCPConn.WriteTo, File.WriteTo
	return t.PkgPath() == "net" && t.Name() == "tcpConnWithoutWriteTo" ||
		t.PkgPath() == "os" && t.Name() == "fileWithoutWriteTo"
}

// streamSocket reports whether c's descriptor is a stream socket, which
// splice(2) reads; net's conns, ours, and an *os.File of one.
func streamSocket(c syscall.RawConn) bool {
	typ := -1
	if err := c.Control(func(fd uintptr) {
		typ, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil {
		return false
	}
	return typ == unix.SOCK_STREAM
}
