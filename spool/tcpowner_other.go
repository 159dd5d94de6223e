//go:build !linux

package spool

import (
	"errors"
	"net"
)

// errPeerGone is tcpOwner's answer for a client whose socket is gone; not
// given here, where no lookup is made.
var errPeerGone = errors.New("spool: owner of a TCP client: the client's socket is closed or gone")

// tcpOwner is only implemented on Linux (NETLINK_SOCK_DIAG); elsewhere
// every loopback TCP client is counted under one key (caps.go).
func tcpOwner(client, server net.Addr) (int, error) {
	return -1, errors.New("spool: the owner of a TCP client is only looked up on Linux")
}
