package conncap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"relayq/internal/sockettest"
)

// TestTCPOwner: the owner of a TCP client's socket, looked up by the
// server's end of the connection, is the uid that made it: this process's
// for a plain dial (IPv4, from 127.0.0.1 and from 127.0.0.2, and IPv6 on
// ::1), nobody's for a socket made as nobody (when the test runs as root).
// A client that has closed or reset its end has no owner any more.
func TestTCPOwner(t *testing.T) {
	for _, tt := range []struct{ name, listen, from string }{
		{"IPv4", "127.0.0.1:0", ""},
		{"IPv4 from 127.0.0.2", "127.0.0.1:0", "127.0.0.2"},
		{"IPv6", "[::1]:0", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", tt.listen)
			if err != nil {
				t.Skipf("no %s on this machine: %v", tt.listen, err)
			}
			t.Cleanup(func() { l.Close() })
			var from *net.TCPAddr
			if tt.from != "" {
				from = &net.TCPAddr{IP: net.ParseIP(tt.from)}
			}
			to := l.Addr().(*net.TCPAddr)

			server := sockettest.Accepted(t, l, sockettest.DialFrom(t, -1, from, to))
			if uid, err := TCPOwner(server.RemoteAddr(), server.LocalAddr()); err != nil || uid != os.Getuid() {
				t.Errorf("owner of this process's connection: %d, %v; want %d", uid, err, os.Getuid())
			}
			if os.Geteuid() == 0 {
				server := sockettest.Accepted(t, l, sockettest.DialFrom(t, sockettest.Nobody, from, to))
				if uid, err := TCPOwner(server.RemoteAddr(), server.LocalAddr()); err != nil || uid != sockettest.Nobody {
					t.Errorf("owner of nobody's connection: %d, %v; want %d", uid, err, sockettest.Nobody)
				}
			}

			client := sockettest.DialFrom(t, -1, from, to)
			server = sockettest.Accepted(t, l, client)
			client.Close()
			if uid, err := TCPOwner(server.RemoteAddr(), server.LocalAddr()); !errors.Is(err, ErrPeerGone) {
				t.Errorf("owner of a closed client: %d, %v; want ErrPeerGone", uid, err)
			}
			client = sockettest.DialFrom(t, -1, from, to)
			server = sockettest.Accepted(t, l, client)
			client.(*net.TCPConn).SetLinger(0)
			client.Close()
			if uid, err := TCPOwner(server.RemoteAddr(), server.LocalAddr()); !errors.Is(err, ErrPeerGone) {
				t.Errorf("owner of a reset client: %d, %v; want ErrPeerGone", uid, err)
			}
		})
	}
}

// TestTCPOwnerIsNotAListener: once a client has reset its connection, its
// address and port may be taken by a listening socket, which a lookup of
// the four-tuple can find instead (the kernel falls back on listeners):
// that socket's owner is not the client's, and the lookup says so.
func TestTCPOwnerIsNotAListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client := sockettest.DialFrom(t, -1, nil, l.Addr().(*net.TCPAddr))
	server := sockettest.Accepted(t, l, client)
	client.(*net.TCPConn).SetLinger(0)
	client.Close()
	squatter, err := net.Listen("tcp", client.LocalAddr().String())
	if err != nil {
		t.Fatalf("listen on the reset client's address: %v", err)
	}
	defer squatter.Close()
	if uid, err := TCPOwner(server.RemoteAddr(), server.LocalAddr()); !errors.Is(err, ErrPeerGone) {
		t.Errorf("owner with a listener on the client's address: %d, %v; want ErrPeerGone", uid, err)
	}
}

// TestTCPOwnerOtherAddresses: addresses that are not two TCP addresses of
// one family have no owner to look up.
func TestTCPOwnerOtherAddresses(t *testing.T) {
	v4 := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 25}
	v6 := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 25}
	for _, tt := range []struct {
		name           string
		client, server net.Addr
	}{
		{"unix", &net.UnixAddr{Name: "/x", Net: "unix"}, v4},
		{"mixed", v4, v6},
		{"no IP", &net.TCPAddr{Port: 1}, v4},
	} {
		if uid, err := TCPOwner(tt.client, tt.server); !errors.Is(err, ErrPeerGone) {
			t.Errorf("%s: %d, %v; want ErrPeerGone", tt.name, uid, err)
		}
	}
}

// BenchmarkTCPOwner: what the lookup adds to the accept of a TCP
// connection (system calls: socket, setsockopt, write, read, close), with
// no other connection open and with 2,000 more: an exact lookup costs the
// same (a dump would walk them all).
func BenchmarkTCPOwner(b *testing.B) {
	for _, others := range []int{0, 2000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			to := l.Addr().(*net.TCPAddr)
			server := sockettest.Accepted(b, l, sockettest.DialFrom(b, -1, nil, to))
			for range others {
				sockettest.Accepted(b, l, sockettest.DialFrom(b, -1, nil, to))
			}
			remote, local := server.RemoteAddr(), server.LocalAddr()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := TCPOwner(remote, local); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestListenerCountsLoopbackTCPByOwner: on a loopback TCP listener the
// caller is the uid that owns the client's socket: this process's two
// connections, from 127.0.0.1 and 127.0.0.2, fill its share, and its
// third, from 127.0.0.3, is refused; nobody's (when the test runs as
// root) still gets in, with its uid on the connection.
func TestListenerCountsLoopbackTCPByOwner(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, 10, 2, "busy\n")
	defer l.Close()
	to := inner.Addr().(*net.TCPAddr)
	accepted := make(chan *Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*Conn)
		}
	}()
	from := func(ip string) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip)} }
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		sockettest.DialFrom(t, -1, from(ip), to)
		if c := <-accepted; c.UID != os.Getuid() {
			t.Errorf("connection from %s: uid %d, want %d", ip, c.UID, os.Getuid())
		}
	}
	third := sockettest.DialFrom(t, -1, from("127.0.0.3"), to)
	if b, _ := io.ReadAll(third); string(b) != "busy\n" {
		t.Errorf("third connection of one user from another address read %q, want the refusal", b)
	}
	if os.Geteuid() == 0 {
		sockettest.DialFrom(t, sockettest.Nobody, nil, to)
		if c := <-accepted; c.UID != sockettest.Nobody {
			t.Errorf("nobody's connection: uid %d", c.UID)
		}
	}
}
