package spool

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relayq/internal/sockettest"
	"relayq/queue"
)

// openQueue opens a real store in a temp dir and checks its integrity when
// the test ends.
func openQueue(t testing.TB, opts queue.Options) *queue.Queue {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range q.Check() {
			t.Errorf("queue integrity: %v", p)
		}
		q.Close()
	})
	return q
}

// socketDir is a short temp directory: a Unix socket path must fit in 108
// bytes, and t.TempDir() names grow with the test name.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "spool")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testLogger writes the server's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startServer runs a Server on a temp socket and 127.0.0.1:0 with opts
// (Queue, Socket, Listen and Logger are filled in when unset) and shuts it
// down when the test ends.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	return startServerWith(t, opts, nil)
}

// startServerWith is startServer, with setup (if not nil) called on the
// Server before it listens: to replace how it looks up the owner of a TCP
// client's socket (tcpOwnedBy, tcpOwnerUnknown).
func startServerWith(t testing.TB, opts Options, setup func(*Server)) *Server {
	t.Helper()
	if opts.Queue == nil {
		opts.Queue = openQueue(t, queue.Options{})
	}
	if opts.Socket == "" {
		opts.Socket = filepath.Join(socketDir(t), "submit.sock")
	}
	if opts.Listen == nil {
		opts.Listen = []string{"127.0.0.1:0"}
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	opts.SocketGID = -1
	if opts.Hostname == "" {
		opts.Hostname = "relayq.test"
	}
	return runServerWith(t, opts, setup)
}

// runServer starts a Server with opts as they are and shuts it down when
// the test ends.
func runServer(t testing.TB, opts Options) *Server {
	t.Helper()
	return runServerWith(t, opts, nil)
}

// runServerWith is runServer with setup as in startServerWith.
func runServerWith(t testing.TB, opts Options, setup func(*Server)) *Server {
	t.Helper()
	s := NewServer(opts)
	if setup != nil {
		setup(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx) // tests that care about the result call it themselves
	})
	return s
}

// dial connects to the server's socket (network "unix") or its first TCP
// listener (network "tcp").
func dial(t testing.TB, s *Server, network string) net.Conn {
	t.Helper()
	for _, a := range s.Addrs() {
		if a.Network() == network {
			c, err := net.DialTimeout(network, a.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			t.Cleanup(func() { c.Close() })
			return c
		}
	}
	t.Fatalf("server has no %s listener", network)
	return nil
}

// step is one exchange of a dialog: a command line (CRLF added) or raw
// bytes, then the reply expected, given by a prefix of its last line such
// as "250 2.0.0" ("" = no reply expected).
type step struct {
	send   string
	raw    string
	expect string
}

// client is the test side of an SMTP dialog, written line by line.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func newClient(t testing.TB, c net.Conn) *client {
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// reply reads one reply and returns its last line.
func (c *client) reply() (string, error) {
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return line, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line, nil
		}
	}
}

// run plays the steps (after reading the greeting if greet) and fails the
// test at the first reply that does not match.
func (c *client) run(steps []step) {
	c.t.Helper()
	for i, st := range steps {
		var err error
		switch {
		case st.send != "":
			_, err = io.WriteString(c.conn, st.send+"\r\n")
		case st.raw != "":
			_, err = io.WriteString(c.conn, st.raw)
		}
		if err != nil {
			c.t.Fatalf("step %d (%.40q): write: %v", i, st.send+st.raw, err)
		}
		if st.expect == "" {
			continue
		}
		got, err := c.reply()
		if err != nil {
			c.t.Fatalf("step %d (%.40q): reading reply: %v (got %q)", i, st.send+st.raw, err, got)
		}
		if !strings.HasPrefix(got, st.expect) {
			c.t.Fatalf("step %d (%.40q): reply %q, want %q…", i, st.send+st.raw, got, st.expect)
		}
	}
}

// expectClosed checks that the server closed the connection (after any
// replies still in flight, which it returns). A reset counts as closed: the
// server closes with unread input.
func (c *client) expectClosed() []string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				c.t.Fatalf("want the connection closed, got %v", err)
			}
			return lines
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
	}
}

// queued returns every message in q with its body, without the headers
// the intake adds before it (unstamp).
func queued(t testing.TB, q *queue.Queue) ([]*queue.Message, []string) {
	t.Helper()
	msgs, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([]string, len(msgs))
	for i, m := range msgs {
		b, err := io.ReadAll(q.Body(m.ID))
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = unstamp(m.ID, string(b))
	}
	return msgs, bodies
}

// unstamp removes what stampMessage put before a message queued as id:
// the Received header that names relayq and id, the Date with the time of
// that Received, the Message-ID with id. An empty line it added stays. A
// body without that Received (from the maildrop) is returned as it is.
func unstamp(id, body string) string {
	rest, ok := strings.CutPrefix(body, "Received: ")
	if !ok {
		return body
	}
	end := strings.Index(rest, "\r\n")
	for end >= 0 && end+2 < len(rest) && rest[end+2] == '\t' {
		next := strings.Index(rest[end+2:], "\r\n")
		if next < 0 {
			return body
		}
		end += 2 + next
	}
	received := rest[:max(end, 0)]
	marker := " (relayq"
	_, date, found := strings.Cut(received, "id "+id+"; ")
	if end < 0 || !found || !strings.Contains(received, marker) {
		return body
	}
	rest = strings.TrimPrefix(rest[end+2:], "Date: "+date+"\r\n")
	if strings.HasPrefix(rest, "Message-ID: <") {
		if line, after, _ := strings.Cut(rest, "\r\n"); strings.Contains(line, "."+id+"@") {
			rest = after
		}
	}
	return rest
}

func addresses(rs []queue.Recipient) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Address
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// captureLog returns a logger that keeps what it is given (and copies it to
// the test log), and a function that returns what it has kept.
func captureLog(t testing.TB) (*slog.Logger, func() string) {
	var mu sync.Mutex
	var b strings.Builder
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		t.Log(strings.TrimSuffix(string(p), "\n"))
		return b.Write(p)
	})
	return slog.New(slog.NewTextHandler(w, nil)), func() string {
		mu.Lock()
		defer mu.Unlock()
		return b.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// tcpOwnedBy has every TCP client of the Server counted as uid's: another
// local user than the test's, whatever uid the test runs as.
func tcpOwnedBy(uid int) func(*Server) {
	return func(s *Server) {
		s.tcpOwner = func(net.Addr, net.Addr) (int, error) { return uid, nil }
	}
}

// tcpOwnerUnknown has the Server's lookups of TCP clients' owners fail
// with err, as when a sandbox refuses netlink.
func tcpOwnerUnknown(err error) func(*Server) {
	return func(s *Server) {
		s.tcpOwner = func(net.Addr, net.Addr) (int, error) { return -1, err }
	}
}

// tcpAddr is the Server's first TCP listener's address.
func tcpAddr(t testing.TB, s *Server) *net.TCPAddr {
	t.Helper()
	for _, a := range s.Addrs() {
		if ta, ok := a.(*net.TCPAddr); ok {
			return ta
		}
	}
	t.Fatal("server has no TCP listener")
	return nil
}

// nobodyUID is the other local user of the tests: the owner of sockets
// they make as another user (dialFrom, with root), or that a replaced
// lookup reports (tcpOwnedBy).
const nobodyUID = sockettest.Nobody

// dialFrom and accepted: see package sockettest.
func dialFrom(t testing.TB, uid int, from, to *net.TCPAddr) net.Conn {
	t.Helper()
	return sockettest.DialFrom(t, uid, from, to)
}
