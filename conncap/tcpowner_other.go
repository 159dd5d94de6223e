//go:build !linux

package conncap

import (
	"errors"
	"net"
)

// ErrPeerGone is TCPOwner's answer for a client whose socket is gone; not
// given here, where no lookup is made.
var ErrPeerGone = errors.New("conncap: owner of a TCP client: the client's socket is closed or gone")

// TCPOwner is only implemented on Linux (NETLINK_SOCK_DIAG); elsewhere
// every loopback TCP client is counted under one key (AddrKey).
func TCPOwner(client, server net.Addr) (int, error) {
	return -1, errors.New("conncap: the owner of a TCP client is only looked up on Linux")
}
