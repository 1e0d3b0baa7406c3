//go:build linux

package reactor

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReadFrom writes what r yields, as net.TCPConn's does: from a regular
// *os.File (io.Copy(conn, f) included), or an *io.LimitedReader of one,
// with sendfile(2), so that the bytes go from the page cache to the
// socket without a copy through this process (net/http's file serving
// hands its response body over this way); from a stream socket (another
// NetConn, a net.TCPConn or net.UnixConn: a proxy's io.Copy), or a
// LimitedReader of one, with splice(2) through a pipe (splice.go), until
// the source's end of stream; from anything else, through a buffer, as
// io.Copy does. When the socket is full it parks on the reactor as Write
// does; the write deadline and Close end it, with the bytes written so
// far counted. Waiting for a socket source's bytes is under that source's
// read deadline, as its Read would be; a Close of this NetConn meanwhile
// returns at once, and the ReadFrom fails with it when the bytes come
// (they are lost, as those in io.Copy's buffer would be), as net's does.
// Only a source's own types splice (not a type that embeds one, whose
// Read may differ: a bufio.Reader holding peeked bytes). An
// io.LimitedReader's N goes down by what was sent.
func (c *NetConn) ReadFrom(r io.Reader) (int64, error) {
	n, handled, err := c.fd.sendFile(r)
	if !handled {
		n, handled, err = c.fd.spliceFrom(r)
	}
	if handled {
		return n, c.fd.opErr("readfrom", err)
	}
	n, err = io.Copy(writerOnly{c}, r)
	return n, c.fd.opErr("readfrom", err)
}

var _ io.ReaderFrom = (*NetConn)(nil)

// writerOnly hides NetConn's ReadFrom from io.Copy, which would call it
// again.
type writerOnly struct{ io.Writer }

// maxSendfile bounds one sendfile(2), so that one call's count fits an
// int anywhere; the deadline and Close are looked at where a send parks
// (fd.wait), as Write's are.
const maxSendfile = 4 << 20

// sendable is a file sendFile can take: *os.File, or what embeds one.
type sendable interface {
	syscall.Conn
	Stat() (os.FileInfo, error)
}

// sendFile sends r with sendfile(2) where r is a file it can take (see
// ReadFrom); handled is false, with nothing sent, where it is not.
func (fd *netFD) sendFile(r io.Reader) (written int64, handled bool, err error) {
	remain := int64(-1) // to end of file
	lr, limited := r.(*io.LimitedReader)
	if limited {
		if lr.N <= 0 {
			return 0, true, nil
		}
		remain, r = lr.N, lr.R
	}
	// Not *os.File: io.Copy(conn, f) goes through f's WriteTo, which
	// hands ReadFrom a wrapper of f that still has these two.
	f, ok := r.(sendable)
	if !ok {
		return 0, false, nil
	}
	if st, serr := f.Stat(); serr != nil || !st.Mode().IsRegular() {
		return 0, false, nil // a pipe, a socket, a device: io.Copy's path
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	if !fd.ref.incref() {
		return 0, true, net.ErrClosed
	}
	defer fd.decref()
	fd.wmu.Lock()
	defer fd.wmu.Unlock()
	var werr error
	cerr := sc.Read(func(src uintptr) bool {
		written, handled, werr = fd.sendFileFrom(int(src), remain)
		return true
	})
	fd.countOut(written) // under the reference
	if limited {
		lr.N -= written
	}
	if cerr != nil && werr == nil {
		werr = cerr // the file was closed under us
	}
	return written, handled, werr
}

// sendFileFrom is sendFile's loop, with the write lock held: sendfile(2)
// from src's offset (which it advances) until remain bytes or the end of
// the file (remain < 0).
func (fd *netFD) sendFileFrom(src int, remain int64) (written int64, handled bool, err error) {
	if err := fd.prepare(&fd.wr); err != nil {
		return 0, true, err
	}
	for remain != 0 {
		chunk := maxSendfile
		if remain > 0 && remain < int64(chunk) {
			chunk = int(remain)
		}
		n, err := unix.Sendfile(fd.sysfd, src, nil, chunk)
		if n > 0 {
			written += int64(n)
			if remain > 0 {
				remain -= int64(n)
			}
		}
		switch {
		case err == nil && n == 0:
			return written, true, nil // end of file
		case err == nil, err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := fd.wait(&fd.wr, Out, true); err != nil {
				return written, true, err
			}
		case written == 0 && (err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP):
			return 0, false, nil // a file sendfile cannot read: io.Copy's path
		default:
			return written, true, os.NewSyscallError("sendfile", err)
		}
	}
	return written, true, nil
}
