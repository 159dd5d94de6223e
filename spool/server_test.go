package spool

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

// The start of every transaction in the dialogs below.
var hello = []step{
	{expect: "220 "},
	{send: "EHLO client.test", expect: "250 "},
}

func dialog(steps ...[]step) []step {
	var out []step
	for _, s := range steps {
		out = append(out, s...)
	}
	return out
}

// transaction is MAIL, one RCPT and DATA with the given raw data (which
// must end with the end-of-data line), expecting reply at the end.
func transaction(data, reply string) []step {
	return []step{
		{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
		{send: "RCPT TO:<root@example.org>", expect: "250 2.0.0"},
		{send: "DATA", expect: "354 "},
		{raw: data, expect: reply},
	}
}

const queuedReply = "250 2.0.0 Ok: queued as "

func TestDialogs(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name  string
		opts  Options
		steps []step
		// bodies are the messages queued, in order, without the
		// headers the intake adds (unstamp); a message that does not
		// begin with a header gets an empty line first. nil = nothing
		// queued.
		bodies []string
	}{
		{
			name:   "normal submission",
			steps:  dialog(hello, transaction("Subject: hi\r\n\r\nbody\r\n.\r\n", queuedReply), []step{{send: "QUIT", expect: "221 2.0.0"}}),
			bodies: []string{"Subject: hi\r\n\r\nbody\r\n"},
		},
		{
			name:   "bare LF becomes CRLF",
			steps:  dialog(hello, transaction("Subject: x\n\nline 1\nline 2\r\n.\r\n", queuedReply)),
			bodies: []string{"Subject: x\r\n\r\nline 1\r\nline 2\r\n"},
		},
		{
			name:   "bare CR becomes CRLF",
			steps:  dialog(hello, transaction("a\rb\r\n.\r\n", queuedReply)),
			bodies: []string{"\r\na\r\nb\r\n"},
		},
		{
			// The smuggling attempt: <LF>.<LF> does not end DATA, and what
			// follows it is body, not a second transaction.
			name: "LF dot LF does not end data",
			steps: dialog(hello, transaction("a\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<victim@example.com>\nDATA\nspoofed\r\n.\r\n", queuedReply),
				[]step{{send: "QUIT", expect: "221 2.0.0"}}),
			bodies: []string{"\r\na\r\n.\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nspoofed\r\n"},
		},
		{
			name:   "CR dot CR does not end data",
			steps:  dialog(hello, transaction("a\r.\rb\r\n.\r\n", queuedReply)),
			bodies: []string{"\r\na\r\n.\r\nb\r\n"},
		},
		{
			// go-smtp removes the dot after CRLF as if it were stuffing, so
			// the line comes out empty; it still does not end DATA.
			name:   "CRLF dot LF does not end data",
			steps:  dialog(hello, transaction("a\r\n.\nb\r\n.\r\n", queuedReply)),
			bodies: []string{"\r\na\r\n\r\nb\r\n"},
		},
		{
			name:   "dot-stuffed lines are unstuffed",
			steps:  dialog(hello, transaction("..\r\n..foo\r\n...\r\n.\r\n", queuedReply)),
			bodies: []string{"\r\n.\r\n.foo\r\n..\r\n"},
		},
		{
			name:   "10000-character line accepted",
			steps:  dialog(hello, transaction(long+"\r\n.\r\n", queuedReply)),
			bodies: []string{"\r\n" + long + "\r\n"},
		},
		{
			name:   "empty message accepted",
			steps:  dialog(hello, transaction(".\r\n", queuedReply)),
			bodies: []string{""},
		},
		{
			name:  "NUL refused",
			steps: dialog(hello, transaction("a\x00b\r\n.\r\n", "554 5.6.0"), []step{{send: "QUIT", expect: "221 2.0.0"}}),
		},
		{
			name:  "too large",
			opts:  Options{MaxMessageSize: 100},
			steps: dialog(hello, transaction(strings.Repeat("y", 200)+"\r\n.\r\n", "552 5.3.4"), []step{{send: "NOOP", expect: "250 2.0.0"}}),
		},
		{
			// Bare LFs grow when normalised; the limit applies to what is stored.
			name:  "too large once normalised",
			opts:  Options{MaxMessageSize: 100},
			steps: dialog(hello, transaction(strings.Repeat("\n", 60)+"\r\n.\r\n", "552 5.3.4")),
		},
		{
			name: "declared SIZE too large",
			opts: Options{MaxMessageSize: 100},
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<cron@example.org> SIZE=1000", expect: "552 5.3.4"},
			}),
		},
		{
			name: "line longer than the limit",
			opts: Options{MaxLineLength: 1000},
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
				{send: "RCPT TO:<root@example.org>", expect: "250 2.0.0"},
				{send: "DATA", expect: "354 "},
				{raw: strings.Repeat("z", 2000) + "\r\n.\r\n", expect: "552 5.3.4"},
			}),
		},
		{
			name: "too many recipients",
			opts: Options{MaxRecipients: 2},
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
				{send: "RCPT TO:<a@example.org>", expect: "250 2.0.0"},
				{send: "RCPT TO:<b@example.org>", expect: "250 2.0.0"},
				{send: "RCPT TO:<c@example.org>", expect: "452 4.5.3"},
				{send: "DATA", expect: "354 "},
				{raw: "x\r\n.\r\n", expect: queuedReply},
			}),
			bodies: []string{"\r\nx\r\n"},
		},
		{
			name: "bad addresses",
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<a@exa\x01mple.org>", expect: "501 5.1.7"},
				{send: `MAIL FROM:<"a b"@example.org>`, expect: "501 5.1.7"},
				{send: "MAIL FROM:<-X/tmp/log@example.org>", expect: "501 5.1.7"},
				{send: "MAIL FROM:<>", expect: "250 2.0.0"},
				{send: "RCPT TO:<a@b..c>", expect: "501 5.1.3"},
				{send: "RCPT TO:<a@exa\x7fmple.org>", expect: "501 5.1.3"},
				{send: "RCPT TO:<" + strings.Repeat("l", 65) + "@example.org>", expect: "501 5.1.3"},
				{send: "RCPT TO:<ok@example.org>", expect: "250 2.0.0"},
				{send: "DATA", expect: "354 "},
				{raw: "x\r\n.\r\n", expect: queuedReply},
			}),
			bodies: []string{"\r\nx\r\n"},
		},
		{
			// go-smtp's parser wants local@domain, so RFC 5321's bare
			// <postmaster> is refused before relayq sees it.
			name: "postmaster without domain",
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
				{send: "RCPT TO:<postmaster>", expect: "501 5.5.2"},
			}),
		},
		{
			name: "nested MAIL",
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
				{send: "MAIL FROM:<cron@example.org>", expect: "503 5.5.1"},
				{send: "RSET", expect: "250 2.0.0"},
				{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
			}),
		},
		{
			// CHUNKING (always advertised by go-smtp) ends in the same Data.
			name: "BDAT",
			steps: dialog(hello, []step{
				{send: "MAIL FROM:<cron@example.org>", expect: "250 2.0.0"},
				{send: "RCPT TO:<root@example.org>", expect: "250 2.0.0"},
				{raw: "BDAT 4\r\na\nb\n", expect: "250 2.0.0"},
				{raw: "BDAT 3 LAST\r\n.\rc", expect: queuedReply},
			}),
			bodies: []string{"\r\na\r\nb\r\n.\r\nc\r\n"},
		},
		{
			name: "two transactions on one connection",
			steps: dialog(hello, transaction("one\r\n.\r\n", queuedReply), transaction("two\r\n.\r\n", queuedReply),
				[]step{{send: "QUIT", expect: "221 2.0.0"}}),
			bodies: []string{"\r\none\r\n", "\r\ntwo\r\n"},
		},
	}
	for _, tt := range tests {
		for _, network := range []string{"unix", "tcp"} {
			t.Run(tt.name+"/"+network, func(t *testing.T) {
				tt.opts.Queue = openQueue(t, queue.Options{})
				s := startServer(t, tt.opts)
				c := newClient(t, dial(t, s, network))
				c.run(tt.steps)
				c.conn.Close()
				shutdown(t, s) // waits for the session to end
				_, bodies := queued(t, tt.opts.Queue)
				if len(bodies) == 0 {
					bodies = nil
				}
				if !reflect.DeepEqual(bodies, tt.bodies) {
					t.Errorf("queued bodies\n%q\nwant\n%q", bodies, tt.bodies)
				}
				for _, b := range bodies {
					if !crlfOnly(b) {
						t.Errorf("stored body %q has a bare CR or LF", b)
					}
				}
			})
		}
	}
}

func shutdown(t testing.TB, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// crlfOnly reports whether every CR and LF in s is part of a CRLF.
func crlfOnly(s string) bool {
	return !strings.ContainsAny(strings.ReplaceAll(s, "\r\n", ""), "\r\n")
}

func TestEnvelopeAndSubmitter(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			q := openQueue(t, queue.Options{})
			s := startServer(t, Options{Queue: q})
			c := newClient(t, dial(t, s, network))
			c.run(dialog(hello, []step{
				{send: "MAIL FROM:<jörg@exämple.de> SMTPUTF8", expect: "250 2.0.0"},
				{send: "RCPT TO:<a@example.com>", expect: "250 2.0.0"},
				{send: "RCPT TO:<a@EXAMPLE.com>", expect: "250 2.0.0"}, // the same mailbox
				{send: "RCPT TO:<A@example.com>", expect: "250 2.0.0"}, // local parts are case-sensitive
				{send: "DATA", expect: "354 "},
				{raw: "Subject: caf\xc3\xa9\r\n\r\n.\r\n", expect: queuedReply},
			}))
			localAddr := c.conn.LocalAddr().String()
			c.conn.Close()
			shutdown(t, s)

			msgs, _ := queued(t, q)
			if len(msgs) != 1 {
				t.Fatalf("%d messages queued, want 1", len(msgs))
			}
			m := msgs[0]
			if m.From != "jörg@exämple.de" || !m.UTF8 || !m.EightBit {
				t.Errorf("from %q utf8 %v 8bit %v, want jörg@exämple.de, true, true", m.From, m.UTF8, m.EightBit)
			}
			if got, want := addresses(m.Recipients), []string{"a@example.com", "A@example.com"}; !reflect.DeepEqual(got, want) {
				t.Errorf("recipients %q, want %q", got, want)
			}
			// The test process's own name and unit (often none here).
			want := queue.Submitter{UID: os.Getuid(), Via: "socket", User: userName(os.Getuid()), Unit: unitOf(os.Getpid())}
			if network == "tcp" {
				// The owner of the client's socket; no unit (no pid).
				want = queue.Submitter{UID: os.Getuid(), Via: "tcp", Addr: localAddr, User: userName(os.Getuid())}
			}
			if m.Submitter != want {
				t.Errorf("submitter %+v, want %+v", m.Submitter, want)
			}
		})
	}
}

// The reply carries the queue ID of the committed message.
func TestQueuedAsID(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	c := newClient(t, dial(t, s, "unix"))
	c.run(hello)
	c.run(transaction("x\r\n", "")[:3])
	if _, err := c.conn.Write([]byte("x\r\n.\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := c.reply()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := strings.CutPrefix(line, queuedReply)
	if !ok {
		t.Fatalf("reply %q", line)
	}
	if _, err := q.Get(id); err != nil {
		t.Fatalf("queue has no message %q: %v", id, err)
	}
}

func TestStorageFailures(t *testing.T) {
	t.Run("queue full", func(t *testing.T) {
		q := openQueue(t, queue.Options{MaxSize: 1 << 20})
		s := startServer(t, Options{Queue: q, MaxMessageSize: 8 << 20})
		c := newClient(t, dial(t, s, "unix"))
		c.run(dialog(hello, transaction(strings.Repeat("0123456789abcdef\r\n", 2<<20/18)+".\r\n", "452 4.3.1 ")))
		// The connection is still usable: a later, small message fits.
		c.run(transaction("small\r\n.\r\n", queuedReply))
	})
	t.Run("below min_free", func(t *testing.T) {
		// Refused at MAIL, before the body is sent.
		dir := t.TempDir()
		free, err := queue.FreeSpace(dir)
		if err != nil {
			t.Fatal(err)
		}
		q := openQueue(t, queue.Options{MinFree: free + 1<<30})
		s := startServer(t, Options{Queue: q})
		c := newClient(t, dial(t, s, "unix"))
		c.run(dialog(hello, []step{{send: "MAIL FROM:<cron@example.org>", expect: "452 4.3.1 "}}))
		if msgs, _ := q.List(); len(msgs) != 0 {
			t.Fatalf("queued %d messages below min_free", len(msgs))
		}
	})
	t.Run("other storage failure", func(t *testing.T) {
		s := startServer(t, Options{})
		// Put fails with something other than ErrFull, as after a forced
		// Shutdown.
		s.cancelPut()
		c := newClient(t, dial(t, s, "unix"))
		c.run(dialog(hello, transaction("x\r\n.\r\n", "451 4.3.0 ")))
	})
}

func TestClientDropsMidData(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	c := newClient(t, dial(t, s, "unix"))
	c.run(dialog(hello, transaction("Subject: half\r\n\r\nthe first half", "")))
	c.conn.Close()
	shutdown(t, s)
	if msgs, _ := queued(t, q); len(msgs) != 0 {
		t.Fatalf("%d messages queued from an interrupted DATA", len(msgs))
	}
}

// A read timeout inside DATA gets 451 4.4.2 and closes the connection, so
// the rest of the body is never read as commands (emersion/go-smtp#196).
func TestReadTimeoutInData(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q, ReadTimeout: 300 * time.Millisecond})
	c := newClient(t, dial(t, s, "unix"))
	c.run(dialog(hello, transaction("Subject: slow\r\n", "451 4.4.2 ")))
	// The rest of the "body" must not be read as commands. (The write may
	// fail already: the server has closed.)
	c.conn.Write([]byte("QUIT\r\n"))
	if lines := c.expectClosed(); len(lines) != 0 {
		t.Errorf("after the timeout the server still answered %q", lines)
	}
	shutdown(t, s)
	if msgs, _ := queued(t, q); len(msgs) != 0 {
		t.Fatalf("%d messages queued after a timeout", len(msgs))
	}
}

// Shutdown closes idle connections at once and lets a message being
// received finish with its 250.
func TestShutdownLetsDataFinish(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	busy := newClient(t, dial(t, s, "unix"))
	busy.run(dialog(hello, transaction("Subject: in flight\r\n", "")))
	waitReceiving(t, s)
	idle := newClient(t, dial(t, s, "tcp"))
	idle.run(hello)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	idle.expectClosed() // Shutdown has begun
	if _, err := net.Dial("unix", s.opts.Socket); err == nil {
		t.Error("the socket still accepts connections during Shutdown")
	}
	busy.run([]step{{raw: "\r\nbody\r\n.\r\n", expect: queuedReply}})
	busy.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if msgs, _ := queued(t, q); len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
}

// waitReceiving waits until a session is inside Data: the client's 354
// comes before go-smtp calls Data, and a Shutdown in between refuses the
// message (421) instead of waiting for it.
func waitReceiving(t *testing.T, s *Server) {
	waitFor(t, "a session to be receiving DATA", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			if c.inData {
				return true
			}
		}
		return false
	})
}

// When Shutdown's context ends first, the connections are closed and
// nothing half-received is queued.
func TestShutdownDeadline(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	busy := newClient(t, dial(t, s, "unix"))
	busy.run(dialog(hello, transaction("Subject: stuck\r\n", "")))
	waitReceiving(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want deadline exceeded", err)
	}
	busy.expectClosed()
	if msgs, _ := queued(t, q); len(msgs) != 0 {
		t.Fatalf("%d messages queued", len(msgs))
	}
}

func TestStartSocket(t *testing.T) {
	t.Run("mode", func(t *testing.T) {
		s := startServer(t, Options{SocketMode: 0o660})
		fi, err := os.Stat(s.opts.Socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Errorf("socket mode %v, want socket 0660", fi.Mode())
		}
	})
	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "submit.sock")
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close() // a daemon that died: the file stays, nobody answers
		s := startServer(t, Options{Socket: path})
		c := newClient(t, dial(t, s, "unix"))
		c.run(hello)
	})
	t.Run("live daemon", func(t *testing.T) {
		first := startServer(t, Options{})
		second := NewServer(Options{Queue: first.opts.Queue, Socket: first.opts.Socket, SocketGID: -1, Logger: testLogger(t)})
		err := second.Start()
		if err == nil || !strings.Contains(err.Error(), "another relayq") {
			t.Fatalf("second Start on a live socket: %v", err)
		}
		c := newClient(t, dial(t, first, "unix"))
		c.run(hello) // the first one still serves
	})
	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "submit.sock")
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := NewServer(Options{Queue: openQueue(t, queue.Options{}), Socket: path, SocketGID: -1, Logger: testLogger(t)})
		if err := s.Start(); err == nil {
			t.Fatal("Start replaced a file that is not a socket")
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Fatal("the file was touched")
		}
	})
	t.Run("bad listen address closes the socket again", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "submit.sock")
		s := NewServer(Options{Queue: openQueue(t, queue.Options{}), Socket: path, Listen: []string{"256.0.0.1:25"}, SocketGID: -1, Logger: testLogger(t)})
		if err := s.Start(); err == nil {
			t.Fatal("Start succeeded with a bad listen address")
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind: %v", err)
		}
	})
}
