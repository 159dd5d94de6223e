package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

func TestSubmit(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	env := queue.Envelope{From: "cron@example.org", Recipients: []string{"a@example.com", "b@example.com"}}
	body := "Subject: x\r\n\r\n.leading dot\r\n.\r\nend\r\n"
	id, err := Submit(context.Background(), s.opts.Socket, env, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.Get(id)
	if err != nil {
		t.Fatalf("Submit returned %q, not in the queue: %v", id, err)
	}
	got, _ := io.ReadAll(q.Body(id))
	if err := checkStamped(got, []byte(body), id); err != nil {
		t.Error(err)
	}
	if m.From != env.From || !reflect.DeepEqual(addresses(m.Recipients), env.Recipients) || m.Submitter.UID != os.Getuid() {
		t.Errorf("queued %+v", m)
	}
}

func TestSubmitNullSenderAndUTF8(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	env := queue.Envelope{From: "", Recipients: []string{"jörg@exämple.de"}}
	id, err := Submit(context.Background(), s.opts.Socket, env, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := q.Get(id)
	if m.From != "" || !m.UTF8 {
		t.Errorf("from %q utf8 %v, want the null sender and SMTPUTF8", m.From, m.UTF8)
	}
}

func TestSubmitUnreachable(t *testing.T) {
	dir := socketDir(t)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	// A daemon that accepts and hangs up at once, as one shutting down.
	hangup := filepath.Join(dir, "hangup.sock")
	hl, err := net.Listen("unix", hangup)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	go func() {
		for {
			c, err := hl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	for name, socket := range map[string]string{
		"missing": filepath.Join(dir, "missing.sock"),
		"refused": stale,
		"hang up": hangup,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Submit(context.Background(), socket, env, []byte("x\r\n"))
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Submit: %v, want ErrUnreachable", err)
			}
		})
	}
}

// The daemon's refusals come back as its reply, and a temporary one stays
// temporary (never the 554 go-smtp makes of other errors).
func TestSubmitReplies(t *testing.T) {
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	tests := []struct {
		name     string
		qopts    queue.Options
		opts     Options
		body     string
		code     int
		enhanced smtp.EnhancedCode
	}{
		{"too large", queue.Options{}, Options{MaxMessageSize: 10}, strings.Repeat("x", 100) + "\r\n", 552, smtp.EnhancedCode{5, 3, 4}},
		{"queue full", queue.Options{MaxSize: 1 << 20}, Options{MaxMessageSize: 8 << 20}, strings.Repeat("0123456789abcdef\r\n", 2<<20/18), 452, smtp.EnhancedCode{4, 3, 1}},
		{"NUL", queue.Options{}, Options{}, "a\x00\r\n", 554, smtp.EnhancedCode{5, 6, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Queue = openQueue(t, tt.qopts)
			s := startServer(t, tt.opts)
			_, err := Submit(context.Background(), s.opts.Socket, env, []byte(tt.body))
			var smtpErr *smtp.SMTPError
			if !errors.As(err, &smtpErr) {
				t.Fatalf("Submit: %v, want an SMTP reply", err)
			}
			if smtpErr.Code != tt.code || smtpErr.EnhancedCode != tt.enhanced {
				t.Errorf("reply %d %v, want %d %v", smtpErr.Code, smtpErr.EnhancedCode, tt.code, tt.enhanced)
			}
			if errors.Is(err, ErrUnreachable) {
				t.Error("a reply counted as unreachable (sendmail would write a maildrop file)")
			}
		})
	}
}

// Submit checks addresses itself: go-smtp's client only refuses CR and LF,
// so "a@b> SIZE=1" would otherwise become an ESMTP parameter.
func TestSubmitRefusesBadAddresses(t *testing.T) {
	s := startServer(t, Options{})
	for _, env := range []queue.Envelope{
		{From: "a@example.org> SIZE=1", Recipients: []string{"b@example.org"}},
		{From: "a@example.org", Recipients: []string{"b@example.org> NOTIFY=NEVER"}},
		{From: "a@example.org", Recipients: []string{"-X/tmp/log@example.org"}},
	} {
		_, err := Submit(context.Background(), s.opts.Socket, env, []byte("x\r\n"))
		if !errors.Is(err, ErrBadAddress) {
			t.Errorf("Submit(%q → %q): %v, want ErrBadAddress", env.From, env.Recipients, err)
		}
	}
}

func TestSubmitContext(t *testing.T) {
	// A daemon that never greets.
	path := filepath.Join(socketDir(t), "mute.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	if _, err := Submit(ctx, path, env, []byte("x\r\n")); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Submit: %v, want ErrUnreachable once ctx ends before the message was sent", err)
	}
}

// scriptedDaemon listens on a Unix socket and runs script on the first
// connection, after the greeting; the script's error (nil when the
// dialogue went as it wanted) comes back from the returned function, which
// waits for the script to end.
func scriptedDaemon(t *testing.T, script func(c net.Conn) error) (socket string, result func() error) {
	return serveOnce(t, "scripted.sock", func(c net.Conn) error {
		if _, err := c.Write([]byte("220 scripted ESMTP\r\n")); err != nil {
			return err
		}
		return script(c)
	})
}

// serveOnce listens on a Unix socket named name and runs serve on the
// first connection, which it then closes; serve's error comes back from
// result, which waits for it.
func serveOnce(t *testing.T, name string, serve func(c net.Conn) error) (socket string, result func() error) {
	t.Helper()
	socket = filepath.Join(socketDir(t), name)
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- serve(c)
	}()
	return socket, func() error { return <-errc }
}

// expectRead reads once from c (a single write of the client's arrives in
// one read) and checks that it got exactly want: more means the client
// did not wait for a reply, less that it wrote in pieces.
func expectRead(c net.Conn, want string) error {
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if got := string(buf[:n]); got != want {
		return errors.New("read " + quote(got) + ", want " + quote(want))
	}
	return nil
}

func quote(s string) string { return "\"" + s + "\"" }

func reply(c net.Conn, lines string) error {
	if lines == "" {
		return nil
	}
	_, err := c.Write([]byte(lines))
	return err
}

// A daemon that does not offer PIPELINING gets one command at a time, each
// after the reply to the one before; then QUIT, whose reply Submit does
// not wait for (this daemon never sends it: Submit returns all the same,
// else the test hangs).
func TestSubmitInTurnWithoutPipelining(t *testing.T) {
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org", "c@example.org"}}
	socket, result := scriptedDaemon(t, func(c net.Conn) error {
		steps := []struct{ read, reply string }{
			{"EHLO localhost\r\n", "250-scripted\r\n250 8BITMIME\r\n"},
			{"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n", "250 ok\r\n"},
			{"RCPT TO:<b@example.org>\r\n", "250 ok\r\n"},
			{"RCPT TO:<c@example.org>\r\n", "250 ok\r\n"},
			{"DATA\r\n", "354 go ahead\r\n"},
		}
		for _, s := range steps {
			if err := expectRead(c, s.read); err != nil {
				return err
			}
			if err := reply(c, s.reply); err != nil {
				return err
			}
		}
		var got bytes.Buffer
		buf := make([]byte, 4096)
		for !bytes.HasSuffix(got.Bytes(), []byte("\r\n.\r\n")) {
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			got.Write(buf[:n])
		}
		if got.String() != "x\r\n.\r\n" {
			return errors.New("body " + quote(got.String()))
		}
		if err := reply(c, "250 ok queued as Q2\r\n"); err != nil {
			return err
		}
		if err := expectRead(c, "QUIT\r\n"); err != nil {
			return err
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			return errors.New("Submit did not close the connection after QUIT")
		}
		return nil
	})
	id, err := Submit(context.Background(), socket, env, []byte("x\r\n"))
	if err != nil || id != "Q2" {
		t.Errorf("Submit: %q, %v; want Q2", id, err)
	}
	if err := result(); err != nil {
		t.Error(err)
	}
}

// Submit does not wait for the reply to its QUIT, so the daemon's 221
// finds the connection closed: that is the end of an ordinary session,
// not something to warn about in the daemon's log at every message. Nor is
// a connection dialed ahead and closed unused (sendmail's message was bad),
// its greeting unread: its daemon reads a reset.
func TestSubmitLeavesNoWarningInTheLog(t *testing.T) {
	log, logged := captureLog(t)
	s := startServer(t, Options{Logger: log})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	for range 5 {
		if _, err := Submit(context.Background(), s.opts.Socket, env, []byte("x\r\n")); err != nil {
			t.Fatal(err)
		}
		a := Dial(s.opts.Socket, time.Minute)
		// Once the greeting is there (peeked at, left unread), close.
		rc, err := a.nc.(*net.UnixConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		rc.Read(func(fd uintptr) bool {
			_, _, err := syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK)
			return err != syscall.EAGAIN
		})
		a.Close()
	}
	waitFor(t, "the sessions to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})
	if l := logged(); strings.Contains(l, "level=WARN") || strings.Count(l, "msg=accepted") != 5 {
		t.Errorf("log:\n%s\nwant 5 lines \"accepted\" and no warning", l)
	}
}

// Submit says EHLO as soon as it is connected, without waiting for the
// greeting: the greeting and the reply to EHLO come in one round trip.
// This daemon reads the EHLO before it greets; a client that waited for
// the greeting would wait for ever (until the test's deadline).
func TestSubmitSaysHelloAhead(t *testing.T) {
	socket, result := aheadDaemon(t, nil, []exchange{
		{"EHLO localhost\r\n", "220 ahead ESMTP\r\n250-ahead\r\n250 PIPELINING\r\n"},
		{"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go ahead\r\n"},
		{"x\r\n.\r\nQUIT\r\n", "250 ok queued as Q3\r\n"},
	})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	id, err := Submit(context.Background(), socket, env, []byte("x\r\n"))
	if err != nil || id != "Q3" {
		t.Errorf("Submit: %q, %v; want Q3", id, err)
	}
	if err := result(); err != nil {
		t.Error(err)
	}
}

// exchange is one step of a scripted daemon: what it reads (in one read:
// see expectRead), then what it answers.
type exchange struct{ read, reply string }

// converse runs steps on c.
func converse(c net.Conn, steps []exchange) error {
	for _, s := range steps {
		if err := expectRead(c, s.read); err != nil {
			return err
		}
		if err := reply(c, s.reply); err != nil {
			return err
		}
	}
	return nil
}

// aheadDaemon listens on a Unix socket and runs steps on the first
// connection without greeting first: the client is to speak before the
// greeting (its first step answers with it). The first read's result goes
// to hello too, when it is not nil. result waits for the steps' end.
func aheadDaemon(t *testing.T, hello chan<- error, steps []exchange) (socket string, result func() error) {
	return serveOnce(t, "ahead.sock", func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err := expectRead(c, steps[0].read)
		if hello != nil {
			hello <- err
		}
		if err != nil {
			return err
		}
		if err := reply(c, steps[0].reply); err != nil {
			return err
		}
		return converse(c, steps[1:])
	})
}

// A daemon that turns a connection away (over a connection cap, caps.go)
// answers 421 and closes without reading: the EHLO written ahead is never
// read, and Submit returns the daemon's reply as ErrUnreachable: nothing
// was accepted, and sendmail leaves the message in the maildrop.
func TestSubmitHelloAheadOfARefusal(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q, MaxConnections: 1})
	hold := dial(t, s, "unix") // the one connection the cap allows
	defer hold.Close()
	waitFor(t, "the first connection to count", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	for range 20 {
		_, err := Submit(context.Background(), s.opts.Socket, env, []byte("x\r\n"))
		var reply *smtp.SMTPError
		if !errors.As(err, &reply) || reply.Code != 421 || !errors.Is(err, ErrUnreachable) {
			t.Fatalf("Submit over the cap: %v, want the daemon's 421 as ErrUnreachable", err)
		}
	}
}

// Dial connects and says EHLO at once, before the message is there; the
// message then goes on that connection while it is fresh, and on a new
// one when it is not (the old one closed, nothing sent on it), or when the
// dial ahead failed (the daemon was not there yet).
func TestDialAhead(t *testing.T) {
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	t.Run("fresh", func(t *testing.T) {
		hello := make(chan error, 1)
		socket, result := aheadDaemon(t, hello, []exchange{
			{"EHLO localhost\r\n", "220 ahead ESMTP\r\n250-ahead\r\n250 PIPELINING\r\n"},
			{"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go ahead\r\n"},
			{"x\r\n.\r\nQUIT\r\n", "250 ok queued as Q4\r\n"},
		})
		a := Dial(socket, time.Minute)
		if err := <-hello; err != nil {
			t.Fatalf("the daemon, before the message: %v; want EHLO", err)
		}
		id, err := a.Submit(context.Background(), env, []byte("x\r\n"))
		if err != nil || id != "Q4" {
			t.Errorf("Submit: %q, %v; want Q4", id, err)
		}
		if err := result(); err != nil {
			t.Error(err)
		}
	})
	t.Run("stale", func(t *testing.T) {
		s := startServer(t, Options{})
		conns := func() int {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.conns)
		}
		a := Dial(s.opts.Socket, time.Second)
		waitFor(t, "the daemon to take the connection dialed ahead", func() bool { return conns() == 1 })
		// The message has not come yet: the daemon sees the connection
		// end once it is no longer fresh, and has none of this client's.
		waitFor(t, "the connection dialed ahead to end", func() bool { return conns() == 0 })
		first := a.nc
		id, err := a.Submit(context.Background(), env, []byte("x\r\n"))
		if err != nil || id == "" {
			t.Fatalf("Submit: %q, %v", id, err)
		}
		if first == nil || a.nc == first {
			t.Error("the stale connection carried the message")
		}
	})
	t.Run("not there yet", func(t *testing.T) {
		socket := filepath.Join(socketDir(t), "later.sock")
		a := Dial(socket, time.Minute)
		q := openQueue(t, queue.Options{})
		startServer(t, Options{Queue: q, Socket: socket})
		id, err := a.Submit(context.Background(), env, []byte("x\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Get(id); err != nil {
			t.Errorf("%s not queued: %v", id, err)
		}
	})
}
