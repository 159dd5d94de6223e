package spool

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// How a message came in, as recorded in queue.Submitter.Via.
const (
	viaSocket   = "socket"
	viaTCP      = "tcp"
	viaMaildrop = "maildrop"
)

// listener wraps each accepted connection in a conn the Server tracks, and
// turns away those over the connection caps (caps.go) before go-smtp sees
// them. The net.Listener under it is an acceptretry.Listener: go-smtp's Serve
// retries only what net.Error calls Temporary (EMFILE, ENFILE, not ENOBUFS or
// ENOMEM) and logs every retry, so the retrying happens below it.
type listener struct {
	net.Listener
	srv *Server
	via string
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.srv.admitConn(nc, l.via); c != nil {
			return c, nil
		}
	}
}

// conn is a connection as go-smtp sees it. It exists for these reasons:
//
//   - Once a read has timed out, every later read returns io.EOF, so the
//     server closes the connection. go-smtp does not (emersion/go-smtp#196):
//     after a timeout inside DATA it would read the rest of the body as
//     commands.
//   - Shutdown can stop the idle connections while those receiving DATA
//     finish.
//   - Until the client has given MAIL FROM, a read waits at most
//     Options.IdleTimeout (see SetReadDeadline), so that idle connections
//     cannot hold the caps for the length of ReadTimeout.
//   - go-smtp misreads some DATA and misnames us after EHLO; wire puts
//     both right (wire.go).
//   - go-smtp writes every reply line by itself; conn holds those a
//     pipelining client's next commands will follow, and writes them
//     together (replies.go).
//   - go-smtp sets a deadline before every command and every reply; conn
//     passes on only those that move (deadline).
type conn struct {
	net.Conn
	srv *Server
	via string
	key string // what the per-user cap counts it under (caps.go)
	uid int    // the peer's uid (on TCP: its socket's owner); -1 if unknown
	pid int    // the peer's pid on the socket, 0 if unknown
	// credErr is why the peer's credentials are unknown.
	credErr error
	dead    atomic.Bool
	inTxn   atomic.Bool // MAIL FROM accepted, transaction not yet over
	inData  bool        // guarded by srv.mu
	wire    wire
	replies heldReplies // replies.go
	// The deadlines in force on Conn, as set through conn (see deadline).
	readAt, writeAt deadline
}

// SetReadDeadline is how go-smtp times out each command: outside a
// transaction the deadline is brought forward to IdleTimeout from now.
func (c *conn) SetReadDeadline(t time.Time) error {
	if idle := c.srv.opts.IdleTimeout; idle > 0 && !t.IsZero() && !c.inTxn.Load() {
		if soon := time.Now().Add(idle); soon.Before(t) {
			t = soon
		}
	}
	if !c.readAt.moves(t) {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline is how go-smtp times out each reply.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if !c.writeAt.moves(t) {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.readAt.at, c.writeAt.at = t, t
	return c.Conn.SetDeadline(t)
}

// deadline is a deadline in force on a connection. go-smtp sets a read
// deadline before every command and a write deadline before every reply,
// each a whole timeout from now (minutes), eight a message: each is a
// change to the runtime's timers, a sizeable part of what a command costs
// besides its system calls. A new deadline is passed on only when it is
// earlier than the one in force, or later by more than 1/64 of the time
// left until it: a timeout then ends at most 1/64 early (10 minutes: 9.4
// s). It is used from the connection's goroutine only (go-smtp's).
type deadline struct {
	at time.Time // zero: none
}

// moves reports whether t is to be set, and if so takes it as in force.
func (d *deadline) moves(t time.Time) bool {
	if !t.IsZero() && !d.at.IsZero() && !t.Before(d.at) && t.Sub(d.at) <= time.Until(t)/64 {
		return false
	}
	d.at = t
	return true
}

func (c *conn) Read(b []byte) (int, error) { return c.wire.read(b, c.readNet) }

func (c *conn) Write(b []byte) (int, error) {
	out := c.wire.reply(b)
	if err := c.replies.write(c.Conn, out, c.mayHold(out)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// readNet reads from the network, once the replies held are out. A client
// that has gone (EPIPE, ECONNRESET) ends the session as the client's end
// of input does, which go-smtp takes quietly; its error would be logged
// as a failure of the session, a warning for what relayq's sendmail does
// at every message: it closes once it has the 250 to its message and sent
// QUIT, without waiting for the 221, which then has nobody to go to; and
// it closes a connection it dialed ahead and did not use (spool.Dial)
// with the greeting unread, which a Unix socket's peer reads as a reset.
func (c *conn) readNet(b []byte) (int, error) {
	if err := c.replies.flush(c.Conn); err != nil {
		return 0, endOfInput(err)
	}
	if c.dead.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b)
	if isTimeout(err) {
		c.dead.Store(true)
	}
	return n, endOfInput(err)
}

// endOfInput is err, or io.EOF for an error that says the client has
// closed its end (see readNet).
func endOfInput(err error) error {
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		return io.EOF
	}
	return err
}

func (c *conn) Close() error {
	c.replies.flush(c.Conn) // the last replies (221 to QUIT, 421) go out first
	c.srv.untrack(c)
	return c.Conn.Close()
}

// stopReading makes the next read return io.EOF, and wakes one that is
// waiting, so the server's loop ends after the reply it is writing.
func (c *conn) stopReading() {
	c.dead.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

// track counts c in, under its key. s.mu is held.
func (s *Server) track(c *conn) {
	if s.closing {
		c.stopReading()
	}
	s.conns[c] = struct{}{}
	s.perKey[c.key]++
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return // closed twice
	}
	delete(s.conns, c)
	if s.perKey[c.key]--; s.perKey[c.key] <= 0 {
		delete(s.perKey, c.key)
	}
}

// beginData marks c as receiving a message. It returns false once Shutdown
// has begun: the message is then refused.
func (s *Server) beginData(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	c.inData = true
	s.receiving.Add(1)
	return true
}

// endData is called once the message is queued or refused; during Shutdown
// the connection then ends after its reply.
func (s *Server) endData(c *conn) {
	s.mu.Lock()
	c.inData = false
	if s.closing {
		c.stopReading()
	}
	s.mu.Unlock()
	s.receiving.Done()
}

func isTimeout(err error) bool {
	if err == nil {
		return false // before ne, which errors.As makes escape: no allocation per read
	}
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
