package api

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// capListener caps the connections open at once, in all and per caller
// (uid on the socket, address on TCP), so that no local user can take the
// API, or the daemon's descriptors, for themselves: a connection over a
// cap is answered 503 with Retry-After and closed at once, as intake
// answers 421 (spool caps.go), instead of waiting where it would hold
// up the accept loop. It also reads each Unix socket peer's uid at Accept.
type capListener struct {
	net.Listener
	max, perCaller int
	unix           bool

	mu     sync.Mutex
	open   int
	perKey map[string]int
}

func newCapListener(l net.Listener, max, perCaller int, unix bool) *capListener {
	return &capListener{Listener: l, max: max, perCaller: perCaller, unix: unix, perKey: map[string]int{}}
}

const replyBusy = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 84\r\n\r\n" +
	`{"error": {"code": "too_many_connections", "message": "too many connections, retry"}}`

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &capConn{Conn: c, uid: -1, l: l}
		if l.unix {
			cc.uid = peerUID(c)
			cc.key = "uid " + strconv.Itoa(cc.uid)
		} else if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
			cc.key = "addr " + host
		}
		if l.admit(cc.key) {
			return cc, nil
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, replyBusy)
		c.Close()
	}
}

func (l *capListener) admit(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || l.perKey[key] >= l.perCaller {
		return false
	}
	l.open++
	l.perKey[key]++
	return true
}

func (l *capListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perKey[key]--; l.perKey[key] <= 0 {
		delete(l.perKey, key)
	}
}

// capConn is a connection counted under the caps, with its peer's uid (-1
// on TCP or when unknown).
type capConn struct {
	net.Conn
	uid  int
	key  string
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}
