//go:build !linux

package spool

import "os"

// readProcFile reads a file of /proc; buf is not used outside Linux, where
// there is no /proc/PID/cgroup to read.
func readProcFile(path string, buf []byte) ([]byte, error) {
	return os.ReadFile(path)
}
