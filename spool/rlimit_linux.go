package spool

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// descriptorsLow reports whether nc, just accepted, left fewer than reserve
// descriptors free under RLIMIT_NOFILE (read each time: an operator may
// change it on the running daemon with prlimit). Linux gives a new
// descriptor the lowest free number, so every number below nc's is in use
// and only those from nc's up to the limit can still be free.
func descriptorsLow(nc net.Conn, reserve int) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return false
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return false
	}
	return uint64(fd)+uint64(reserve) >= lim.Cur
}
