package spool

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// How a message came in, as recorded in queue.Submitter.Via.
const (
	viaSocket   = "socket"
	viaTCP      = "tcp"
	viaMaildrop = "maildrop"
)

// listener wraps each accepted connection in a conn the Server tracks.
type listener struct {
	net.Listener
	srv *Server
	via string
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.srv.track(c, l.via), nil
}

// conn is a connection as go-smtp sees it. It exists for two reasons:
//
//   - Once a read has timed out, every later read returns io.EOF, so the
//     server closes the connection. go-smtp does not (emersion/go-smtp#196):
//     after a timeout inside DATA it would read the rest of the body as
//     commands.
//   - Shutdown can stop the idle connections while those receiving DATA
//     finish.
//   - go-smtp misreads some DATA and misnames us after EHLO; wire puts
//     both right (wire.go).
type conn struct {
	net.Conn
	srv    *Server
	via    string
	dead   atomic.Bool
	inData bool // guarded by srv.mu
	wire   wire
}

func (c *conn) Read(b []byte) (int, error) { return c.wire.read(b, c.readNet) }

func (c *conn) Write(b []byte) (int, error) {
	out := c.wire.reply(b)
	n, err := c.Conn.Write(out)
	if err != nil {
		return min(n, len(b)), err
	}
	return len(b), nil
}

// readNet reads from the network.
func (c *conn) readNet(b []byte) (int, error) {
	if c.dead.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b)
	if isTimeout(err) {
		c.dead.Store(true)
	}
	return n, err
}

func (c *conn) Close() error {
	c.srv.untrack(c)
	return c.Conn.Close()
}

// stopReading makes the next read return io.EOF, and wakes one that is
// waiting, so the server's loop ends after the reply it is writing.
func (c *conn) stopReading() {
	c.dead.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

func (s *Server) track(nc net.Conn, via string) *conn {
	c := &conn{Conn: nc, srv: s, via: via, wire: wire{hostname: s.opts.Hostname}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		c.stopReading()
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
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
	var ne net.Error
	return err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
}
