// Package conncap says who is at the other end of a local connection and
// caps the connections open at once on a listener, in all and per caller,
// so that no local user can take a socket, or the daemon's descriptors,
// for themselves. The caller is a local user's uid: the peer's on a Unix
// socket (SO_PEERCRED), and on a loopback TCP connection the owner of the
// client's socket (TCPOwner, NETLINK_SOCK_DIAG). A TCP client whose owner
// cannot be looked up counts under its address, every loopback address as
// one (AddrKey: a local user can connect from any of 127.0.0.0/8). A
// connection over a cap is answered with the listener's refusal (an HTTP
// 503, a JSON error) and closed at once, in Accept, so it never reaches
// the server or costs a goroutine.
//
// spool's intake keeps its own caps (they share one count over the
// socket and every listener, and a reserve of descriptors) with the same
// keys.
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
			cc.key = UIDKey(cc.UID)
		} else {
			cc.key = AddrKey(c.RemoteAddr())
			if isLoopback(c.RemoteAddr()) {
				if uid, err := TCPOwner(c.RemoteAddr(), c.LocalAddr()); err == nil {
					cc.UID, cc.key = uid, UIDKey(uid)
				}
			}
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
	// UID is the peer's uid on a Unix socket, the owner of the client's
	// socket on loopback TCP; -1 when unknown.
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

// UIDKey is the key of a local user's connections.
func UIDKey(uid int) string { return "uid " + strconv.Itoa(uid) }

// AddrKey is the key of a TCP client whose owner is not known: its
// address, every loopback address as one (counted per address, one user
// could connect from each of millions of 127.0.0.0/8 addresses).
func AddrKey(remote net.Addr) string {
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		host = remote.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return "addr loopback"
	}
	return "addr " + host
}

func isLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}
