package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"relayq/queue"
	"relayq/spool"
)

// TestSendmailSMTPSession: sendmail -bs speaks SMTP on standard input and
// output (as Alpine uses it): each reply comes from the daemon, a message
// is queued with the daemon's 250 under this user's uid, and the session
// ends with QUIT and exit 0.
func TestSendmailSMTPSession(t *testing.T) {
	s := newSendmailSetup(t, "")
	q := s.startIntake(t, queue.Options{}, spool.Options{Hostname: "host.test"})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- runSendmail([]string{"-c", s.config, "-bs"}, cmdEnv{Stdin: inR, Stdout: outW, Stderr: &errb, Getenv: func(string) string { return "" }})
		outW.Close()
	}()
	defer inW.Close()
	replies := bufio.NewReader(outR)
	var id string
	for _, st := range []struct{ send, expect string }{
		{"", "220 host.test"},
		{"EHLO alpine.example", "250 "},
		{"MAIL FROM:<me@example.org>", "250 "},
		{"RCPT TO:<you@example.net>", "250 "},
		{"DATA", "354 "},
		{"Subject: from alpine\r\n\r\n..dot line\r\n.", "250 2.0.0 Ok: queued as "},
		{"QUIT", "221 "},
	} {
		if st.send != "" {
			io.WriteString(inW, st.send+"\r\n")
		}
		line, err := readReply(replies)
		if err != nil || !strings.HasPrefix(line, st.expect) {
			t.Fatalf("after %q: reply %q (%v), want %q…", st.send, line, err, st.expect)
		}
		id, _ = strings.CutPrefix(line, "250 2.0.0 Ok: queued as ")
	}
	select {
	case code := <-done:
		if code != exitOK || errb.Len() != 0 {
			t.Errorf("exit %d, stderr %q; want 0 and nothing", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sendmail -bs did not end after QUIT")
	}
	msgs, _ := q.List()
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "me@example.org" || len(m.Recipients) != 1 || m.Recipients[0].Address != "you@example.net" || m.Submitter.UID != os.Getuid() {
		t.Errorf("queued %s → %v by uid %d", m.From, recipientAddrs(m), m.Submitter.UID)
	}
	body, _ := io.ReadAll(q.Body(m.ID))
	if !strings.HasSuffix(string(body), "Subject: from alpine\r\n\r\n.dot line\r\n") || !strings.HasPrefix(string(body), "Received: ") {
		t.Errorf("queued %q (said %s)", body, id)
	}
}

// readReply reads one SMTP reply and returns its last line.
func readReply(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if err != nil || len(line) < 4 || line[3] != '-' {
			return line, err
		}
	}
}

// TestSendmailSMTPDaemonDown: with the daemon not running, sendmail -bs
// answers the session itself (a client that sends every command at once
// too) and leaves each message in the maildrop, with a 250 once it is on
// disk; the daemon imports it, its stuffed dot removed. A maildrop that
// cannot be written gets 451 for the message, not a 250.
func TestSendmailSMTPDaemonDown(t *testing.T) {
	s := newSendmailSetup(t, "")
	if err := spool.EnsureMaildrop(s.maildrop); err != nil {
		t.Fatal(err)
	}
	session := "EHLO alpine.example\r\nMAIL FROM:<me@example.org>\r\nRCPT TO:<you@example.net>\r\nDATA\r\n" +
		"Subject: while down\r\n\r\nline\r\r\n..dot line\r\n.\r\nQUIT\r\n"
	res := runSendmailTest(session, "-c", s.config, "-bs")
	if res.code != exitOK || !strings.HasPrefix(res.stdout, "220 host.test ") || !strings.Contains(res.stdout, "\r\n250 2.0.0 Ok: queued in the maildrop as ") ||
		!strings.HasSuffix(res.stdout, "\r\n221 2.0.0 Bye\r\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0, the message queued in the maildrop, 221", res.code, res.stdout, res.stderr)
	}
	q := s.startIntake(t, queue.Options{}, spool.Options{})
	if n, err := (&spool.Maildrop{Dir: s.maildrop, Queue: q}).Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("import: %d, %v", n, err)
	}
	msgs, _ := q.List()
	if len(msgs) != 1 || msgs[0].From != "me@example.org" || msgs[0].Submitter.UID != os.Getuid() {
		t.Fatalf("queued %+v", msgs)
	}
	body, _ := io.ReadAll(q.Body(msgs[0].ID))
	if !strings.HasSuffix(string(body), "\r\nSubject: while down\r\n\r\nline\r\n\r\n.dot line\r\n") {
		t.Errorf("queued %q", body)
	}

	nowhere := newSendmailSetup(t, "") // no maildrop directory
	res = runSendmailTest(session, "-c", nowhere.config, "-bs")
	if strings.Contains(res.stdout, "\r\n250 2.0.0 Ok: queued") || !strings.Contains(res.stdout, "\r\n451 4.3.0 ") {
		t.Errorf("no maildrop: stdout %q, want 451 for the message", res.stdout)
	}
}

// TestNewaliases: newaliases (relayq installed under that name), sendmail
// -bi and sendmail -I succeed quietly when the aliases are fine (none, or
// a good aliases_file): Debian's maintainer scripts run them after
// installing an MTA and abort when they fail. relayq has no aliases
// database to rebuild; a bad file is tested in tests/rewrite_test.go.
func TestNewaliases(t *testing.T) {
	s := newSendmailSetup(t, "")
	aliases := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(aliases, []byte("# Debian's\npostmaster: root\nroot: ops@example.com,\n  oncall@example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withFile := newSendmailSetup(t, "[aliases]\naliases_file = "+strconv.Quote(aliases)+"\n")
	for _, argv := range [][]string{
		{"newaliases", "-c", withFile.config},
		{"sendmail", "-c", withFile.config, "-bi"},
		{"/usr/bin/newaliases"},
		{"newaliases", "-c", s.config},
		{"sendmail", "-bi"},
		{"/usr/sbin/sendmail", "-I"},
		{"relayq", "sendmail", "-c", s.config, "-bi"},
	} {
		var out, errb bytes.Buffer
		env := cmdEnv{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		if code := run(argv, env); code != exitOK || out.Len()+errb.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and no output", argv, code, out.String(), errb.String())
		}
	}
}
