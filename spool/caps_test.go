package spool

import (
	"net"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

// greeting reads the first reply of a new connection.
func greeting(t *testing.T, c net.Conn) string {
	t.Helper()
	line, err := newClient(t, c).reply()
	if err != nil {
		t.Fatalf("no greeting: %v (got %q)", err, line)
	}
	return line
}

// One submitter cannot hold more than MaxConnectionsPerUser connections,
// on the socket (counted by uid) or on a TCP listener (by address); the
// one over the cap is told 421 4.7.0 and closed, and once one of its
// connections ends it may open another. MaxConnections caps them all.
func TestConnectionCaps(t *testing.T) {
	for _, tt := range []struct {
		name    string
		opts    Options
		network string
		allowed int
	}{
		{"per uid on the socket", Options{MaxConnectionsPerUser: 3}, "unix", 3},
		{"per address on TCP", Options{MaxConnectionsPerUser: 3}, "tcp", 3},
		{"in total", Options{MaxConnections: 4, MaxConnectionsPerUser: 10}, "unix", 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.opts)
			var open []net.Conn
			for range tt.allowed {
				c := dial(t, s, tt.network)
				if g := greeting(t, c); !strings.HasPrefix(g, "220 ") {
					t.Fatalf("connection under the cap: greeting %q", g)
				}
				open = append(open, c)
			}
			over := newClient(t, dial(t, s, tt.network))
			if g, _ := over.reply(); g != "421 4.7.0 Too many connections, try again later" {
				t.Fatalf("connection over the cap: greeting %q, want 421 4.7.0", g)
			}
			over.expectClosed()
			// The ones let in still work.
			newClient(t, open[0]).run(dialog(hello[1:], transaction("Subject: x\r\n\r\nx\r\n.\r\n", queuedReply)))
			open[1].Close()
			waitFor(t, "the server to see the connection close", func() bool { return s.openConns() < tt.allowed })
			if g := greeting(t, dial(t, s, tt.network)); !strings.HasPrefix(g, "220 ") {
				t.Fatalf("connection after one closed: greeting %q", g)
			}
		})
	}
}

// A local user cannot get round the per-address cap by connecting from
// other loopback addresses (any of 127.0.0.0/8 reaches a listener on
// 127.0.0.1): they count as one.
func TestConnectionCapCountsLoopbackAsOne(t *testing.T) {
	s := startServer(t, Options{MaxConnectionsPerUser: 2})
	var addr string
	for _, a := range s.Addrs() {
		if a.Network() == "tcp" {
			addr = a.String()
		}
	}
	from := func(src string) net.Conn {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
		if g := greeting(t, from(src)); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection from %s under the cap: greeting %q", src, g)
		}
	}
	over := newClient(t, from("127.0.0.3"))
	if g, _ := over.reply(); g != "421 4.7.0 Too many connections, try again later" {
		t.Fatalf("third loopback connection, from 127.0.0.3: greeting %q, want 421 4.7.0", g)
	}
}

// A connection that has not begun a transaction is closed after
// IdleTimeout, much shorter than the ReadTimeout a transaction gets:
// connections left idle cannot hold the caps for ten minutes.
func TestIdleTimeoutBeforeMail(t *testing.T) {
	s := startServer(t, Options{Queue: openQueue(t, queue.Options{}), IdleTimeout: 200 * time.Millisecond, ReadTimeout: time.Hour})
	idle := newClient(t, dial(t, s, "unix"))
	idle.run(dialog(hello))
	idle.conn.SetDeadline(time.Now().Add(time.Minute))
	if got, _ := idle.reply(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Fatalf("idle connection: %q, want 421 4.4.2 (idle timeout)", got)
	}
	idle.expectClosed()

	// Inside a transaction, a pause longer than IdleTimeout is fine.
	busy := newClient(t, dial(t, s, "unix"))
	busy.run(dialog(hello, []step{{send: "MAIL FROM:<a@example.org>", expect: "250 "}}))
	time.Sleep(time.Second)
	busy.run([]step{{send: "RCPT TO:<b@example.com>", expect: "250 "}, {send: "DATA", expect: "354 "}})
	time.Sleep(time.Second)
	busy.run([]step{{raw: "Subject: x\r\n\r\nx\r\n.\r\n", expect: "250 2.0.0 "}})
}
