package api

import (
	"net"
	"sync"
)

// capListener caps the connections open at once (a connection over the
// cap waits in the kernel's backlog, as with netutil.LimitListener) and
// reads the peer's uid of each Unix socket connection at Accept.
type capListener struct {
	net.Listener
	sem  chan struct{}
	unix bool
}

func newCapListener(l net.Listener, max int, unix bool) *capListener {
	return &capListener{Listener: l, sem: make(chan struct{}, max), unix: unix}
}

func (l *capListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	cc := &capConn{Conn: c, uid: -1, release: func() { <-l.sem }}
	if l.unix {
		cc.uid = peerUID(c)
	}
	return cc, nil
}

// capConn is a connection counted under the cap, with its peer's uid (-1
// on TCP or when unknown).
type capConn struct {
	net.Conn
	uid     int
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
