package spool

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
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

			server := accepted(t, l, dialFrom(t, -1, from, to))
			if uid, err := tcpOwner(server.RemoteAddr(), server.LocalAddr()); err != nil || uid != os.Getuid() {
				t.Errorf("owner of this process's connection: %d, %v; want %d", uid, err, os.Getuid())
			}
			if os.Geteuid() == 0 {
				server := accepted(t, l, dialFrom(t, nobodyUID, from, to))
				if uid, err := tcpOwner(server.RemoteAddr(), server.LocalAddr()); err != nil || uid != nobodyUID {
					t.Errorf("owner of nobody's connection: %d, %v; want %d", uid, err, nobodyUID)
				}
			}

			client := dialFrom(t, -1, from, to)
			server = accepted(t, l, client)
			client.Close()
			if uid, err := tcpOwner(server.RemoteAddr(), server.LocalAddr()); !errors.Is(err, errPeerGone) {
				t.Errorf("owner of a closed client: %d, %v; want errPeerGone", uid, err)
			}
			client = dialFrom(t, -1, from, to)
			server = accepted(t, l, client)
			client.(*net.TCPConn).SetLinger(0)
			client.Close()
			if uid, err := tcpOwner(server.RemoteAddr(), server.LocalAddr()); !errors.Is(err, errPeerGone) {
				t.Errorf("owner of a reset client: %d, %v; want errPeerGone", uid, err)
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
	client := dialFrom(t, -1, nil, l.Addr().(*net.TCPAddr))
	server := accepted(t, l, client)
	client.(*net.TCPConn).SetLinger(0)
	client.Close()
	squatter, err := net.Listen("tcp", client.LocalAddr().String())
	if err != nil {
		t.Fatalf("listen on the reset client's address: %v", err)
	}
	defer squatter.Close()
	if uid, err := tcpOwner(server.RemoteAddr(), server.LocalAddr()); !errors.Is(err, errPeerGone) {
		t.Errorf("owner with a listener on the client's address: %d, %v; want errPeerGone", uid, err)
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
		if uid, err := tcpOwner(tt.client, tt.server); !errors.Is(err, errPeerGone) {
			t.Errorf("%s: %d, %v; want errPeerGone", tt.name, uid, err)
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
			server := accepted(b, l, dialFrom(b, -1, nil, to))
			for range others {
				accepted(b, l, dialFrom(b, -1, nil, to))
			}
			remote, local := server.RemoteAddr(), server.LocalAddr()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tcpOwner(remote, local); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// dialAs connects to to, from the address from (nil: any), with a socket
// that uid owns. The owner the kernel records is the filesystem uid of the
// thread that makes the socket, so the socket is made on a thread whose
// fsuid is set to uid for that moment: this needs root.
func dialAs(t testing.TB, uid int, from, to *net.TCPAddr) net.Conn {
	t.Helper()
	family, sa, fromSA := sockaddrs(to, from)
	runtime.LockOSThread()
	prev, _ := unix.SetfsuidRetUid(uid)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	unix.Setfsuid(prev)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	if fromSA != nil {
		if err := unix.Bind(fd, fromSA); err != nil {
			t.Fatalf("bind %s: %v", from, err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatalf("connect %s: %v", to, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sockaddrs returns the family of to, and to and from (nil when from is)
// as socket addresses.
func sockaddrs(to, from *net.TCPAddr) (family int, sa, fromSA unix.Sockaddr) {
	if ip := to.IP.To4(); ip != nil {
		sa4 := &unix.SockaddrInet4{Port: to.Port}
		copy(sa4.Addr[:], ip)
		if from != nil {
			f := &unix.SockaddrInet4{Port: from.Port}
			copy(f.Addr[:], from.IP.To4())
			fromSA = f
		}
		return unix.AF_INET, sa4, fromSA
	}
	sa6 := &unix.SockaddrInet6{Port: to.Port}
	copy(sa6.Addr[:], to.IP.To16())
	if from != nil {
		f := &unix.SockaddrInet6{Port: from.Port}
		copy(f.Addr[:], from.IP.To16())
		fromSA = f
	}
	return unix.AF_INET6, sa6, fromSA
}
