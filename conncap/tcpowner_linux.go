package conncap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TCPOwner returns the uid that owns the client's end of a TCP connection
// made on this host: the socket whose local address is client and whose
// remote address is server (the accepted connection's RemoteAddr and
// LocalAddr). The kernel records as a socket's owner the (filesystem) uid
// of the process that created it, and only root can change it: it is the
// TCP counterpart of a Unix socket's SO_PEERCRED.
//
// It asks with one NETLINK_SOCK_DIAG request for exactly that socket
// (inet_diag_req_v2 with the four-tuple and no NLM_F_DUMP: a hash lookup in
// the kernel, whatever the number of sockets; a dump would walk every TCP
// socket of the host at every accept). What it costs: a netlink socket,
// setsockopt, write, read and close, about 10 µs, and no allocation. The
// kernel answers inside the write, so the read finds the answer waiting;
// a receive timeout of tcpOwnerTimeout bounds it all the same.
//
// ErrPeerGone when the client's socket no longer belongs to a process (it
// closed: an orphan in FIN_WAIT, TIME_WAIT, or gone) or the addresses are
// not two TCP addresses of one family; any other error says the lookup
// itself cannot be made (netlink refused by a sandbox, sock_diag missing).
func TCPOwner(client, server net.Addr) (int, error) {
	var req [sizeofSockDiagRequest]byte
	seq := tcpOwnerSeq.Add(1)
	clientPort, serverPort, err := sockDiagRequest(req[:], client, server, seq)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("conncap: owner of a TCP client: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(tcpOwnerTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return -1, fmt.Errorf("conncap: owner of a TCP client: netlink receive timeout: %w", err)
	}
	// An unconnected netlink socket writes to the kernel.
	if _, err := unix.Write(fd, req[:]); err != nil {
		return -1, fmt.Errorf("conncap: owner of a TCP client: netlink request: %w", err)
	}
	var answer [512]byte
	n, err := readNetlink(fd, answer[:])
	if err != nil {
		return -1, fmt.Errorf("conncap: owner of a TCP client: netlink answer: %w", err)
	}
	return sockDiagOwner(answer[:n], seq, clientPort, serverPort)
}

// tcpOwnerTimeout is the longest a lookup waits for the kernel's answer,
// holding up the accept loop of its listener (it runs in Accept).
const tcpOwnerTimeout = 100 * time.Millisecond

// ErrPeerGone says that a TCP client's socket is gone or has no owner any
// more (see TCPOwner): its connection is counted without its uid.
var ErrPeerGone = errors.New("conncap: owner of a TCP client: the client's socket is closed or gone")

// tcpOwnerSeq numbers the requests, so that an answer is known for ours.
var tcpOwnerSeq atomic.Uint32

// The layout of the request and the answer (linux/netlink.h,
// linux/inet_diag.h): a netlink header (16 bytes), then struct
// inet_diag_req_v2 (56) or struct inet_diag_msg (72), each with a struct
// inet_diag_sockid (48) at offset 4: ports (big endian) at 0 and 2, source
// and destination addresses (16 bytes each) at 4 and 20, interface at 36,
// cookie at 40. The answer's uid is at 64 and its inode at 68.
const (
	sizeofSockDiagRequest = unix.SizeofNlMsghdr + 56
	sizeofInetDiagMsg     = 72
	sockidOffset          = 4
	diagUIDOffset         = 64
	diagInodeOffset       = 68
	inetDiagNoCookie      = 0xffffffff // INET_DIAG_NOCOOKIE: any socket of that four-tuple
)

// sockDiagRequest writes into b the request for the socket at client
// talking to server, and returns the two ports.
func sockDiagRequest(b []byte, client, server net.Addr, seq uint32) (clientPort, serverPort uint16, err error) {
	c, ok1 := client.(*net.TCPAddr)
	s, ok2 := server.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%w (%s, %s are not TCP addresses)", ErrPeerGone, client, server)
	}
	family, cIP, sIP := uint8(unix.AF_INET), c.IP.To4(), s.IP.To4()
	if cIP == nil || sIP == nil {
		family, cIP, sIP = unix.AF_INET6, c.IP.To16(), s.IP.To16()
		if cIP == nil || sIP == nil || c.IP.To4() != nil || s.IP.To4() != nil {
			return 0, 0, fmt.Errorf("%w (%s, %s are not of one family)", ErrPeerGone, client, server)
		}
	}
	clientPort, serverPort = uint16(c.Port), uint16(s.Port)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST) // no NLM_F_DUMP: one socket
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], 0)
	r := b[unix.SizeofNlMsghdr:]
	r[0], r[1], r[2], r[3] = family, unix.IPPROTO_TCP, 0, 0
	ne.PutUint32(r[4:], 0xffffffff) // states: unused by a lookup
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], clientPort)
	binary.BigEndian.PutUint16(id[2:], serverPort)
	clear(id[4:36])
	copy(id[4:20], cIP)
	copy(id[20:36], sIP)
	ne.PutUint32(id[36:], 0)
	ne.PutUint32(id[40:], inetDiagNoCookie)
	ne.PutUint32(id[44:], inetDiagNoCookie)
	return clientPort, serverPort, nil
}

// sockDiagOwner reads the owner's uid out of the kernel's answer to
// request seq. The socket must be the one asked for (same ports: a
// lookup that finds no connected socket may fall back on a listener) and
// still open in a process: an orphan (inode 0) or a TIME_WAIT socket
// reports uid 0, which would count a closed client as root.
func sockDiagOwner(b []byte, seq uint32, clientPort, serverPort uint16) (int, error) {
	ne := binary.NativeEndian
	if len(b) < unix.SizeofNlMsghdr+4 || ne.Uint32(b[8:]) != seq {
		return -1, fmt.Errorf("conncap: owner of a TCP client: %d bytes of netlink answer, not ours", len(b))
	}
	body := b[unix.SizeofNlMsghdr:]
	switch ne.Uint16(b[4:]) {
	case unix.NLMSG_ERROR:
		errno := unix.Errno(-int32(ne.Uint32(body)))
		if errno == unix.ENOENT {
			return -1, ErrPeerGone
		}
		return -1, fmt.Errorf("conncap: owner of a TCP client: %w", errno)
	case unix.SOCK_DIAG_BY_FAMILY:
	default:
		return -1, fmt.Errorf("conncap: owner of a TCP client: netlink answer of type %d", ne.Uint16(b[4:]))
	}
	if len(body) < sizeofInetDiagMsg {
		return -1, fmt.Errorf("conncap: owner of a TCP client: short answer (%d bytes)", len(body))
	}
	state, id := body[1], body[sockidOffset:]
	if binary.BigEndian.Uint16(id[0:]) != clientPort || binary.BigEndian.Uint16(id[2:]) != serverPort ||
		ne.Uint32(body[diagInodeOffset:]) == 0 || !connectedState(state) {
		return -1, ErrPeerGone
	}
	return int(ne.Uint32(body[diagUIDOffset:])), nil
}

// connectedState reports whether a TCP state (linux/tcp_states.h) is one
// of a client's socket from connect to close: established, or shut down
// for writing by either side while the process still holds it.
func connectedState(state uint8) bool {
	switch state {
	case 1, // TCP_ESTABLISHED
		4,  // TCP_FIN_WAIT1
		5,  // TCP_FIN_WAIT2
		8,  // TCP_CLOSE_WAIT
		9,  // TCP_LAST_ACK
		11: // TCP_CLOSING
		return true
	}
	return false
}

// readNetlink reads one datagram, again when a signal interrupts the
// wait (a receive timeout makes it return EINTR whatever SA_RESTART says).
func readNetlink(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}
