package spool

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"relayq/conncap"
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
// on the socket or on a TCP listener (counted by uid: the peer's, or the
// owner of the client's socket); the
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
		{"per uid on TCP", Options{MaxConnectionsPerUser: 3}, "tcp", 3},
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

// dialTCPFrom connects to the Server's TCP listener from the loopback
// address src, with a socket that uid owns (-1: this process; another
// needs root, see dialFrom).
func dialTCPFrom(t *testing.T, s *Server, uid int, src string) net.Conn {
	t.Helper()
	return dialFrom(t, uid, &net.TCPAddr{IP: net.ParseIP(src)}, tcpAddr(t, s))
}

// One cap per local user over the socket and TCP together: a TCP client
// counts as the owner of its socket. The test's uid holds its two
// connections over TCP, from 127.0.0.1 and 127.0.0.2 (any of 127.0.0.0/8
// reaches a listener on 127.0.0.1), so its third gets 421 4.7.0, from
// 127.0.0.3 or on the socket alike; another uid (nobody, when the test runs
// as root) still gets in over TCP.
func TestConnectionCapPerLocalUser(t *testing.T) {
	s := startServer(t, Options{MaxConnectionsPerUser: 2})
	for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
		if g := greeting(t, dialTCPFrom(t, s, -1, src)); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection from %s under the cap: greeting %q", src, g)
		}
	}
	for _, over := range []struct {
		what string
		conn net.Conn
	}{
		{"third loopback connection, from 127.0.0.3", dialTCPFrom(t, s, -1, "127.0.0.3")},
		{"a connection to the socket after two over TCP", dial(t, s, "unix")},
	} {
		if g, _ := newClient(t, over.conn).reply(); g != "421 4.7.0 Too many connections, try again later" {
			t.Errorf("%s: greeting %q, want 421 4.7.0", over.what, g)
		}
	}
	if os.Geteuid() != 0 {
		return // no other uid to connect as
	}
	for _, src := range []string{"127.0.0.1", "127.0.0.4"} {
		if g := greeting(t, dialTCPFrom(t, s, nobodyUID, src)); !strings.HasPrefix(g, "220 ") {
			t.Errorf("another uid's connection from %s while the first holds its cap: greeting %q, want 220", src, g)
		}
	}
}

// When the owner of a TCP client's socket cannot be looked up (netlink
// refused by a sandbox), every loopback TCP client counts under one key,
// apart from the socket's uids, as before there was a lookup: connecting
// from 127.0.0.2, .3, … still gains nothing. The log says so once, not
// per connection; a client that is gone before its lookup is not logged.
func TestConnectionCapWithoutOwnerLookup(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		logged int
	}{
		{"netlink refused", fmt.Errorf("spool: owner of a TCP client: netlink socket: %w", syscall.EAFNOSUPPORT), 1},
		{"client gone", conncap.ErrPeerGone, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log, logged := captureLog(t)
			s := startServerWith(t, Options{MaxConnectionsPerUser: 2, Logger: log}, tcpOwnerUnknown(tt.err))
			for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
				if g := greeting(t, dialTCPFrom(t, s, -1, src)); !strings.HasPrefix(g, "220 ") {
					t.Fatalf("connection from %s under the cap: greeting %q", src, g)
				}
			}
			over := newClient(t, dialTCPFrom(t, s, -1, "127.0.0.3"))
			if g, _ := over.reply(); g != "421 4.7.0 Too many connections, try again later" {
				t.Errorf("third loopback connection, from 127.0.0.3: greeting %q, want 421 4.7.0", g)
			}
			if g := greeting(t, dial(t, s, "unix")); !strings.HasPrefix(g, "220 ") {
				t.Errorf("the socket, counted by uid apart: greeting %q, want 220", g)
			}
			const line = "TCP clients whose uid cannot be looked up are counted together"
			if n := strings.Count(logged(), line); n != tt.logged {
				t.Errorf("%q logged %d times, want %d:\n%s", line, n, tt.logged, logged())
			}
			if tt.logged > 0 && !strings.Contains(logged(), "address family not supported") {
				t.Errorf("the log line does not give the lookup's error:\n%s", logged())
			}
		})
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

// With descriptors low (here a reserve larger than any limit), a TCP
// connection is turned away before its owner is looked up: the lookup
// would take one of the descriptors kept in reserve.
func TestNoOwnerLookupWhenDescriptorsLow(t *testing.T) {
	var lookups atomic.Int32
	s := startServerWith(t, Options{ReserveDescriptors: 1 << 30}, func(s *Server) {
		s.tcpOwner = func(client, server net.Addr) (int, error) {
			lookups.Add(1)
			return conncap.TCPOwner(client, server)
		}
	})
	if g, _ := newClient(t, dialTCPFrom(t, s, -1, "127.0.0.1")).reply(); g != "421 4.7.0 Too many connections, try again later" {
		t.Errorf("connection with descriptors low: greeting %q, want 421 4.7.0", g)
	}
	if n := lookups.Load(); n != 0 {
		t.Errorf("%d owner lookups with descriptors low, want none", n)
	}
}
