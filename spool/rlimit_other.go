//go:build !linux

package spool

import "net"

// descriptorsLow only looks at the descriptors on Linux, where a new one
// is known to get the lowest free number; elsewhere only the connection
// caps apply.
func descriptorsLow(net.Conn, int) bool { return false }
