package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

// startTaking runs a Server without a queue but with a maildrop, as the
// daemon does while its queue opens, on a temp socket and 127.0.0.1:0 (or
// opts.Listen).
func startTaking(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Socket = filepath.Join(socketDir(t), "submit.sock")
	if opts.Listen == nil {
		opts.Listen = []string{"127.0.0.1:0"}
	}
	opts.SocketGID, opts.Hostname, opts.Maildrop = -1, "relayq.test", maildropDir(t)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	return runServer(t, opts)
}

// sendOne plays a whole transaction and returns the reply to the final dot.
func sendOne(t *testing.T, c *client, from string, rcpts []string, msg string) string {
	t.Helper()
	steps := []step{{send: "MAIL FROM:<" + from + ">", expect: "250 "}}
	for _, r := range rcpts {
		steps = append(steps, step{send: "RCPT TO:<" + r + ">", expect: "250 "})
	}
	c.run(append(steps, step{send: "DATA", expect: "354 "}, step{raw: msg + "\r\n.\r\n"}))
	got, err := c.reply()
	if err != nil {
		t.Fatalf("reply to the dot: %v", err)
	}
	return got
}

// keptName is the maildrop name in a 250 for a message kept while starting.
func keptName(t *testing.T, reply string) string {
	t.Helper()
	const prefix = "250 2.0.0 Ok: queued as "
	rest, ok := strings.CutPrefix(reply, prefix)
	if !ok || !strings.Contains(rest, "(relayq is starting") {
		t.Fatalf("reply %q, want %q<name> (relayq is starting…)", reply, prefix)
	}
	return strings.Fields(rest)[0]
}

// TestStartingKeepsMessageInMaildrop: before Ready, a session with a
// maildrop gets its 250 at the end of DATA, naming the file; the file is
// complete in the maildrop then (only the daemon may read it). The import,
// once the queue is open, queues it with the submitter the session saw
// (the socket's uid, or the TCP address), the Received header a session
// with the queue open gives (HELO name, ESMTP), and removes the file. The
// probe of `relayq status` still sees relayq starting meanwhile.
func TestStartingKeepsMessageInMaildrop(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startTaking(t, Options{})
			c := newClient(t, dial(t, s, network))
			c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "}})
			reply := sendOne(t, c, "cron@example.org", []string{"a@example.com", "b@example.com"}, "Subject: early\r\n\r\ntaken while starting")
			name := keptName(t, reply)
			c.run([]step{{send: "QUIT", expect: "221 "}})
			if !Starting(context.Background(), s.opts.Socket) {
				t.Error("Starting: false while starting")
			}

			fi, err := os.Stat(filepath.Join(s.opts.Maildrop, name))
			if err != nil {
				t.Fatalf("the 250 names %s, not in the maildrop: %v", name, err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("kept file has mode %v, want 0600", fi.Mode().Perm())
			}

			q := openQueue(t, queue.Options{})
			s.Ready(q)
			if Starting(context.Background(), s.opts.Socket) {
				t.Error("Starting: true once ready")
			}
			md := &Maildrop{Dir: s.opts.Maildrop, Queue: q, Intake: s, Hostname: "relayq.test", Log: testLogger(t)}
			if n, err := md.Import(context.Background()); n != 1 || err != nil {
				t.Fatalf("Import = %d, %v; want 1, nil", n, err)
			}
			if left := listDir(t, s.opts.Maildrop); len(left) != 0 {
				t.Errorf("maildrop holds %q after the import", left)
			}
			msgs, bodies := queued(t, q)
			if len(msgs) != 1 {
				t.Fatalf("%d messages queued, want 1", len(msgs))
			}
			m := msgs[0]
			if got, want := addresses(m.Recipients), []string{"a@example.com", "b@example.com"}; !reflect.DeepEqual(got, want) || m.From != "cron@example.org" {
				t.Errorf("queued from %q to %q", m.From, got)
			}
			if want := "Subject: early\r\n\r\ntaken while starting\r\n"; bodies[0] != want {
				t.Errorf("queued body %q, want %q", bodies[0], want)
			}
			body := readBody(t, q, m.ID)
			switch network {
			case "unix":
				if m.Submitter.UID != os.Getuid() || m.Submitter.Via != viaSocket {
					t.Errorf("submitter %+v, want uid %d via socket", m.Submitter, os.Getuid())
				}
				if !strings.Contains(body, fmt.Sprintf("(relayq, from userid %d)", os.Getuid())) {
					t.Errorf("Received does not name the socket's uid:\n%s", body)
				}
			case "tcp":
				if m.Submitter.UID != os.Getuid() || m.Submitter.Via != viaTCP || !strings.HasPrefix(m.Submitter.Addr, "127.0.0.1:") {
					t.Errorf("submitter %+v, want uid %d (the client socket's owner) and the TCP address", m.Submitter, os.Getuid())
				}
				if !strings.HasPrefix(body, fmt.Sprintf("Received: from client.test ([127.0.0.1])\r\n\tby relayq.test (relayq, from userid %d)", os.Getuid())) {
					t.Errorf("Received does not name the HELO, the address and the uid:\n%s", body)
				}
			}
			if !strings.Contains(body, "\twith ESMTP id "+m.ID+";") {
				t.Errorf("Received does not say ESMTP:\n%s", body)
			}
		})
	}
}

func readBody(t *testing.T, q *queue.Queue, id string) string {
	t.Helper()
	b, err := io.ReadAll(q.Body(id))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStartingRefusesWithoutRoom: while starting, below min_free on the
// queue's file system MAIL gets 452 4.3.1, as the queue would refuse it,
// and nothing is written into the maildrop.
func TestStartingRefusesWithoutRoom(t *testing.T) {
	dir := t.TempDir()
	s := startTaking(t, Options{QueuePath: filepath.Join(dir, "queue.db"), MinFree: 1 << 62})
	c := newClient(t, dial(t, s, "unix"))
	c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "},
		{send: "MAIL FROM:<cron@example.org>", expect: "452 4.3.1 "},
		{send: "RCPT TO:<a@example.com>", expect: "502 5.5.1 "}})
	if left := listDir(t, s.opts.Maildrop); len(left) != 0 {
		t.Errorf("maildrop holds %q", left)
	}
}

// TestStartingChecksAsUsual: what intake checks without the queue it
// checks while starting too, before the 250: unknown local recipients,
// addresses, the size; and the recipients written are those RCPT mapped,
// not mapped a second time by the import (an alias a → b, b → c sends a's
// mail to b, as it does with the queue open).
func TestStartingChecksAsUsual(t *testing.T) {
	rw := Rewriting{Recipient: func(addr string) ([]string, error) {
		switch addr {
		case "nobody@example.com":
			return nil, errors.New("no such user")
		case "a@example.com":
			return []string{"b@example.com"}, nil
		case "b@example.com":
			return []string{"c@example.com"}, nil
		}
		return []string{addr}, nil
	}}
	s := startTaking(t, Options{Rewriting: rw, MaxMessageSize: 100})
	c := newClient(t, dial(t, s, "unix"))
	c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "},
		{send: "MAIL FROM:<bad address>", expect: "501 "},
		{send: "MAIL FROM:<cron@example.org>", expect: "250 "},
		{send: "RCPT TO:<nobody@example.com>", expect: "550 5.1.1 "},
		{send: "RCPT TO:<a@example.com>", expect: "250 "},
		{send: "DATA", expect: "354 "},
		{raw: strings.Repeat("x", 200) + "\r\n.\r\n", expect: "552 5.3.4 "},
	})
	if left := listDir(t, s.opts.Maildrop); len(left) != 0 {
		t.Fatalf("maildrop holds %q after refusals", left)
	}
	keptName(t, sendOne(t, c, "cron@example.org", []string{"a@example.com"}, "small"))
	q := openQueue(t, queue.Options{})
	s.Ready(q)
	md := &Maildrop{Dir: s.opts.Maildrop, Queue: q, Intake: s, Log: testLogger(t)}
	if n, err := md.Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want 1, nil", n, err)
	}
	msgs, _ := queued(t, q)
	if got := addresses(msgs[0].Recipients); !reflect.DeepEqual(got, []string{"b@example.com"}) {
		t.Errorf("queued to %q, want [b@example.com] (mapped once, at RCPT)", got)
	}
}

// TestStartingLimitsAtImport: [limits] need the queue, so while starting
// they are not applied before the 250; the import applies them under the
// submitter the session saw, as to sendmail's files: over
// messages_per_hour the file waits, claimed, without counting as a
// failure.
func TestStartingLimitsAtImport(t *testing.T) {
	s := startTaking(t, Options{Limits: Limits{Default: Limit{MessagesPerHour: 1}}})
	c := newClient(t, dial(t, s, "unix"))
	c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "}})
	keptName(t, sendOne(t, c, "cron@example.org", []string{"a@example.com"}, "first"))
	second := keptName(t, sendOne(t, c, "cron@example.org", []string{"a@example.com"}, "second"))
	q := openQueue(t, queue.Options{})
	s.Ready(q)
	md := &Maildrop{Dir: s.opts.Maildrop, Queue: q, Intake: s, Log: testLogger(t)}
	if n, err := md.Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want 1, nil", n, err)
	}
	if got := listDir(t, s.opts.Maildrop); !reflect.DeepEqual(got, []string{second + maildropWork}) {
		t.Errorf("maildrop holds %q, want the second file waiting", got)
	}
	if w := md.waiting[second]; w == nil || w.failures != 0 {
		t.Errorf("retry state: %+v, want a wait that is no failure", w)
	}
}

// TestForgedIntakeLineIsSetAside: a local user who writes an intake line
// into a maildrop file of their own, claiming another uid (root's, here)
// on the socket, impersonates nobody: the file is set aside (*.bad), the
// forgery logged, nothing queued. The same line in a file the daemon's
// uid owns is honoured (its time is the Received header's), and a
// malformed one is refused.
func TestForgedIntakeLineIsSetAside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to give a maildrop file to another uid (the suite runs as root)")
	}
	const hostile = 65534 // nobody
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	log, logged := captureLog(t)
	srv := NewServer(Options{Queue: q, Logger: log})
	write := func(name, intake string, owner int) {
		data := "relayq-maildrop 1\nfrom <x@example.org>\nrcpt <victim@example.com>\n" + intake + "\nforged\r\n"
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	write("1-forged", "intake via=socket uid=0 user=root unit=cron.service\n", hostile)
	write("2-malformed", "intake via=maildrop uid=0\n", os.Geteuid())
	write("3-daemon", "intake via=socket uid=1234 user=alice at=1577880000000000000\n", os.Geteuid())

	md := &Maildrop{Dir: dir, Queue: q, Intake: srv, Log: log}
	if n, err := md.Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want 1, nil", n, err)
	}
	if got, want := listDir(t, dir), []string{"1-forged.bad", "2-malformed.bad"}; !reflect.DeepEqual(got, want) {
		t.Errorf("maildrop holds %q, want %q", got, want)
	}
	msgs, _ := queued(t, q)
	if len(msgs) != 1 || msgs[0].Submitter != (queue.Submitter{UID: 1234, Via: viaSocket, User: "alice"}) {
		t.Fatalf("queued %+v, want only the daemon's file, as uid 1234", msgs)
	}
	if body := readBody(t, q, msgs[0].ID); !strings.Contains(body, "; Wed, 01 Jan 2020 ") {
		t.Errorf("the stamp does not carry the time intake took the message (2020-01-01, noon UTC):\n%s", body)
	}
	if out := logged(); !strings.Contains(out, "owner uid 65534 claims socket uid 0") {
		t.Errorf("the forgery is not logged:\n%s", out)
	}
}

// TestInheritedServedWhileStarting: with a maildrop, a listener systemd
// passed is served at once while the server starts: its connection gets
// a 250 for its message instead of waiting in the backlog for the queue.
func TestInheritedServedWhileStarting(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := tl.Addr().String()
	s := startTaking(t, Options{Listen: []string{addr}, Inherited: map[string]net.Listener{addr: tl}})
	nc := dial(t, s, "tcp")
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := newClient(t, nc)
	c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "}})
	keptName(t, sendOne(t, c, "cron@example.org", []string{"a@example.com"}, "early"))
}

// TestIntakeLineRoundTrip: what intake records of a session comes back
// as it was, whatever bytes a HELO name or unit holds (a space, "=",
// "+", a CR would otherwise end or split the line); a line that names
// another way in, or a bad uid or field, is refused.
func TestIntakeLineRoundTrip(t *testing.T) {
	for _, o := range []intakeOrigin{
		{sub: queue.Submitter{UID: 1000, Via: viaSocket, User: "alice", Unit: "cron.service"}, helo: "host", with: "ESMTP", at: time.Unix(0, 1796644800123456789)},
		{sub: queue.Submitter{UID: -1, Via: viaTCP, Addr: "[::1]:2525"}, helo: "a b=c+d\r\x00é", with: "SMTP"},
		{sub: queue.Submitter{UID: 0, Via: viaSocket}},
	} {
		line := o.line()
		rest, ok := strings.CutPrefix(line, maildropIntakeKey+" ")
		if !ok || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Fatalf("line %q is not one intake line", line)
		}
		got, err := parseIntakeLine(strings.TrimSuffix(rest, "\n"))
		if err != nil || !reflect.DeepEqual(*got, o) {
			t.Errorf("%+v: line %q reads back as %+v, %v", o, line, got, err)
		}
	}
	for _, bad := range []string{
		"via=maildrop uid=0", "via=api uid=0", "uid=0", "via=socket uid=x", "via=socket uid=-2",
		"via=socket uid=0 uid=1", "via=socket uid=0 owner=1", "via=socket uid=0 with=LMTP", "via=socket uid=0 helo", "via=socket uid=0 at=0", "via=socket uid=0 at=x",
	} {
		if o, err := parseIntakeLine(bad); err == nil {
			t.Errorf("intake line %q taken: %+v", bad, o)
		}
	}
}
