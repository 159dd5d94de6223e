// Package sockettest makes the loopback TCP connections that tests of
// connection caps need: from a chosen 127.0.0.0/8 address, and with a
// socket another uid owns (as another local user's would be).
package sockettest

import (
	"net"
	"testing"
	"time"
)

// Nobody is the other local user of the tests: the owner of sockets they
// make as another user (DialFrom with root).
const Nobody = 65534

// DialFrom connects to the TCP listener at to, from the address from (nil:
// any), with a socket that uid owns (-1: this process; another uid needs
// root and Linux, see DialAs). The connection is closed when the test
// ends.
func DialFrom(t testing.TB, uid int, from, to *net.TCPAddr) net.Conn {
	t.Helper()
	var c net.Conn
	if uid >= 0 {
		c = DialAs(t, uid, from, to)
	} else {
		d := net.Dialer{Timeout: 5 * time.Second}
		if from != nil {
			d.LocalAddr = from
		}
		var err error
		if c, err = d.Dial("tcp", to.String()); err != nil {
			t.Fatal(err)
		}
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// Accepted returns the server's end of client's connection to l, closed
// when the test ends.
func Accepted(t testing.TB, l net.Listener, client net.Conn) net.Conn {
	t.Helper()
	for {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if c.RemoteAddr().String() == client.LocalAddr().String() {
			return c
		}
	}
}
