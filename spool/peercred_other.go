//go:build !linux

package spool

import (
	"errors"
	"net"
)

// peerUID is only implemented on Linux (SO_PEERCRED); elsewhere the
// submitter's uid is recorded as unknown.
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("spool: peer credentials are only read on Linux")
}
