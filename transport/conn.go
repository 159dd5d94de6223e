package transport

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// ioConn is the relay connection as transport sees it, below any TLS
// layer. Every Write gets a fresh write deadline, because go-smtp sets none
// while the body is written and a relay that stops reading would otherwise
// block a worker for ever. Once aborted (the Send's context ended), every
// deadline is in the past, so any I/O in progress or to come fails at once,
// whatever deadlines go-smtp sets afterwards.
type ioConn struct {
	net.Conn
	writeTimeout atomic.Int64 // time.Duration per Write
	aborted      atomic.Bool
	writeFailed  atomic.Bool // some Write returned an error
}

func newIOConn(c net.Conn, writeTimeout time.Duration) *ioConn {
	ic := &ioConn{Conn: c}
	ic.writeTimeout.Store(int64(writeTimeout))
	return ic
}

// past is a deadline that has expired.
var past = time.Unix(1, 0)

func (c *ioConn) Write(b []byte) (int, error) {
	c.SetWriteDeadline(time.Now().Add(time.Duration(c.writeTimeout.Load())))
	n, err := c.Conn.Write(b)
	if err != nil {
		c.writeFailed.Store(true)
	}
	return n, err
}

func (c *ioConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	if c.aborted.Load() {
		return c.Conn.SetDeadline(past)
	}
	return err
}

func (c *ioConn) SetReadDeadline(t time.Time) error {
	err := c.Conn.SetReadDeadline(t)
	if c.aborted.Load() {
		return c.Conn.SetReadDeadline(past)
	}
	return err
}

func (c *ioConn) SetWriteDeadline(t time.Time) error {
	err := c.Conn.SetWriteDeadline(t)
	if c.aborted.Load() {
		return c.Conn.SetWriteDeadline(past)
	}
	return err
}

// setWriteTimeout changes the per-Write deadline (DataTimeout while the
// body is written, CommandTimeout otherwise).
func (c *ioConn) setWriteTimeout(d time.Duration) { c.writeTimeout.Store(int64(d)) }

func (c *ioConn) abort() {
	c.aborted.Store(true)
	c.Conn.SetDeadline(past)
}

// bind aborts the connection when ctx ends, until the returned func is
// called.
func (c *ioConn) bind(ctx context.Context) (unbind func() bool) {
	return context.AfterFunc(ctx, c.abort)
}

// replayConn hands go-smtp a connection whose first bytes are a reply
// transport already read itself (the greeting), so that go-smtp's client,
// which insists on reading a greeting, can take over a session that
// transport began: after STARTTLS, or after probing EHLO.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
