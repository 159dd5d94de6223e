//go:build !linux

package spool

import (
	"errors"
	"net"
)

// peerCred is only implemented on Linux (SO_PEERCRED); elsewhere the
// submitter's uid is recorded as unknown.
func peerCred(net.Conn) (uid, pid int, err error) {
	return -1, 0, errors.New("spool: peer credentials are only read on Linux")
}
