// Package conncap caps the connections open at once on a listener, in all
// and per caller, so that no local user can take a socket, or the
// daemon's descriptors, for themselves. The caller is the peer's uid on a
// Unix socket (SO_PEERCRED) and the remote address on TCP, every loopback
// address counting as one (a local user can connect from any of
// 127.0.0.0/8). A connection over a cap is answered with the listener's
// refusal (an HTTP 503, a JSON error) and closed at once, in Accept, so
// it never reaches the server or costs a goroutine.
package conncap

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Listener is a net.Listener whose Accept returns only connections under
// the caps, as *Conn.
type Listener struct {
	net.Listener
	max, perCaller int
	refusal        string

	mu     sync.Mutex
	open   int
	perKey map[string]int
}

// New wraps l: at most max connections open at once, perCaller of them
// from one caller; refusal is written to a connection over a cap before
// it is closed.
func New(l net.Listener, max, perCaller int, refusal string) *Listener {
	return &Listener{Listener: l, max: max, perCaller: perCaller, refusal: refusal, perKey: map[string]int{}}
}

// Accept waits for the next connection under the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &Conn{Conn: c, UID: -1, l: l}
		if uc, ok := c.(*net.UnixConn); ok {
			cc.UID = PeerUID(uc)
			cc.key = "uid " + strconv.Itoa(cc.UID)
		} else {
			cc.key = addrKey(c.RemoteAddr())
		}
		if l.admit(cc.key) {
			return cc, nil
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, l.refusal)
		c.Close()
	}
}

// Open is how many connections are open under the caps.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) admit(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || l.perKey[key] >= l.perCaller {
		return false
	}
	l.open++
	l.perKey[key]++
	return true
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perKey[key]--; l.perKey[key] <= 0 {
		delete(l.perKey, key)
	}
}

// Conn is a connection counted under the caps until it is closed.
type Conn struct {
	net.Conn
	// UID is the peer's uid on a Unix socket; -1 on TCP or when unknown.
	UID  int
	key  string
	l    *Listener
	once sync.Once
}

// Close closes the connection and frees its place under the caps.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// addrKey is the caller of a TCP connection: its address, every loopback
// address as one.
func addrKey(remote net.Addr) string {
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		host = remote.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return "addr loopback"
	}
	return "addr " + host
}
