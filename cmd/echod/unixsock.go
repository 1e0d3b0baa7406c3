//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// isAbstract reports whether a unix: address names a Linux abstract socket
// ("@name"): one with no file, so nothing to remove, ever. A file called
// @name in the working directory is someone else's.
func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }

// removeStaleSocket removes path if it is a Unix socket that nobody accepts
// on: what an echod killed without its shutdown leaves behind. A socket in
// use, or a file of another kind, stays, for Listen to refuse.
func removeStaleSocket(path string, log *zap.Logger) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		return c.Close() // live: Listen will say "address already in use"
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	log.Info("removed stale socket", zap.String("path", path))
	return nil
}

// socketFile is a Unix socket file echod created by binding, identified by
// device and inode so that echod removes that file and no other: the path
// may since have been removed, or taken by a new deployment's socket or by
// a file of any kind.
type socketFile struct {
	path     string
	dev, ino uint64
}

// boundSocketFile identifies the socket file a bind just created at path.
func boundSocketFile(path string) (socketFile, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return socketFile{}, fmt.Errorf("socket file after bind: %w", &fs.PathError{Op: "lstat", Path: path, Err: err})
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return socketFile{}, fmt.Errorf("%s: not a socket right after bind (mode %#o)", path, st.Mode)
	}
	return socketFile{path: path, dev: st.Dev, ino: st.Ino}, nil
}

// remove removes the socket file if it is still the one echod created.
// Something else at the path is left alone, and said so; a file already
// gone is not an error. (Between the check and the unlink the path could
// change hands again; no unlink call takes an inode to close that.)
func (f socketFile) remove(log *zap.Logger) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(f.path, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return &fs.PathError{Op: "lstat", Path: f.path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Dev != f.dev || st.Ino != f.ino {
		log.Warn("socket file replaced since echod created it: left in place", zap.String("path", f.path))
		return nil
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
