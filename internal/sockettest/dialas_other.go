//go:build !linux

package sockettest

import (
	"net"
	"testing"
)

// DialAs would connect with a socket another uid owns (Linux: fsuid).
func DialAs(t testing.TB, uid int, from, to *net.TCPAddr) net.Conn {
	t.Fatalf("a socket owned by uid %d is only made on Linux", uid)
	return nil
}
