package spool

import (
	"errors"
	"syscall"
)

// readProcFile reads a small file of /proc (a process's cgroup) into buf,
// growing it only if the file is longer, with plain system calls: open,
// read until end of file, close. os.ReadFile costs four to six more on
// every connection (fstat, the fcntl pairs and the epoll registration the
// kernel refuses for a /proc file), and a buffer on the caller's stack
// costs no allocation.
func readProcFile(path string, buf []byte) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	for errors.Is(err, syscall.EINTR) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return nil, err
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
