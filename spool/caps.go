package spool

import (
	"errors"
	"io"
	"net"
	"time"

	"relayq/conncap"
)

// Connection caps, so that no local user can take intake down for the
// others by holding connections open:
//
//   - Options.MaxConnections caps the connections open at once, on every
//     listener together;
//   - Options.MaxConnectionsPerUser caps them per local user: per uid on
//     the socket (the peer's credentials) and on a TCP listener (the owner
//     of the client's socket, conncap.TCPOwner), over both together. A TCP client
//     whose owner cannot be looked up counts under its address, every
//     loopback address as one (conncap.AddrKey);
//   - whatever the caps say, a connection is turned away when accepting it
//     left fewer than Options.ReserveDescriptors descriptors free, so that
//     the control socket, the maildrop import, the queue and delivery still
//     get theirs;
//   - a connection that has not started a transaction waits at most
//     Options.IdleTimeout for each command (conn.SetReadDeadline).
//
// A connection over a cap is answered "421 4.7.0 Too many connections, try
// again later" and closed before go-smtp sees it. It cost the daemon one
// descriptor for a moment and no goroutine.

const (
	// defaultReserveDescriptors is what Options.ReserveDescriptors 0 keeps
	// free: the queue file, the control socket and a few clients, the
	// maildrop directory and a file, the relay connections (5 by default,
	// per relay), log files, with room to spare.
	defaultReserveDescriptors = 64
	// refusalLogInterval is how often a refusal of the same kind for the
	// same submitter reaches the log.
	refusalLogInterval = time.Minute
)

const replyTooManyConns = "421 4.7.0 Too many connections, try again later\r\n"

// admitConn wraps an accepted connection in a tracked conn, or, when it is
// over a cap, answers it 421 and closes it and returns nil.
func (s *Server) admitConn(nc net.Conn, via string) *conn {
	c := &conn{Conn: nc, srv: s, via: via, uid: -1, wire: wire{hostname: s.opts.Hostname}}
	why := ""
	if descriptorsLow(nc, s.opts.ReserveDescriptors) {
		why = "reserved descriptors"
	}
	switch {
	case via == viaSocket:
		c.uid, c.pid, c.credErr = peerCred(nc)
		c.key = conncap.UIDKey(c.uid)
	case why != "":
		c.key = conncap.AddrKey(nc.RemoteAddr()) // refused: no lookup, which takes a descriptor
	default:
		c.uid, c.key = s.tcpKey(nc)
	}
	s.mu.Lock()
	if why == "" {
		why = s.overConnCap(c.key)
	}
	if why == "" {
		s.track(c)
		s.mu.Unlock()
		return c
	}
	s.mu.Unlock()
	s.refuseConn(nc, c.key, why)
	return nil
}

// tcpKey returns the uid that owns the client's end of a TCP connection
// and "uid N", the key its user's socket connections count under too; or,
// when the owner cannot be looked up, -1 and conncap.AddrKey's key. A TCP listener
// is on loopback (the config allows nothing else), so every client is a
// process of this host. The first time a lookup cannot be made at all
// (not for a client that is already gone) the log says so, once.
func (s *Server) tcpKey(nc net.Conn) (uid int, key string) {
	uid, err := s.tcpOwner(nc.RemoteAddr(), nc.LocalAddr())
	if err == nil {
		return uid, conncap.UIDKey(uid)
	}
	if !errors.Is(err, conncap.ErrPeerGone) && s.tcpOwnerFailed.CompareAndSwap(false, true) {
		s.log.Warn("TCP clients whose uid cannot be looked up are counted together, as one submitter for "+
			"max_connections_per_user and [limits] (logged once)", "err", err)
	}
	return -1, conncap.AddrKey(nc.RemoteAddr())
}

// overConnCap names the cap another connection counted under key would
// exceed, or returns "". s.mu is held.
func (s *Server) overConnCap(key string) string {
	switch {
	case s.opts.MaxConnections > 0 && len(s.conns) >= s.opts.MaxConnections:
		return "max_connections"
	case s.opts.MaxConnectionsPerUser > 0 && s.perKey[key] >= s.opts.MaxConnectionsPerUser:
		return "max_connections_per_user"
	}
	return ""
}

// refuseConn answers 421 and closes. The reply fits in the socket's buffer
// of a new connection, so the write does not wait on the client; the
// deadline is there in case it does.
func (s *Server) refuseConn(nc net.Conn, key, why string) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(nc, replyTooManyConns)
	nc.Close()
	s.opts.Metrics.reject(reasonConnections, nil)
	if ok, held := s.refusals.allow(key+" "+why, time.Now()); ok {
		s.log.Warn("connection refused: too many connections", "submitter", key, "limit", why,
			"open", s.openConns(), "refused_since_last_logged", held)
	}
}

func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
