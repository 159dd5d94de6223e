//go:build !linux

package conncap

import "net"

// PeerUID is -1: the peer's credentials are read on Linux only.
func PeerUID(*net.UnixConn) int { return -1 }
