package sockettest

import (
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// DialAs connects to to, from the address from (nil: any), with a socket
// that uid owns. The owner the kernel records is the filesystem uid of the
// thread that makes the socket, so the socket is made on a thread whose
// fsuid is set to uid for that moment: this needs root.
func DialAs(t testing.TB, uid int, from, to *net.TCPAddr) net.Conn {
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
