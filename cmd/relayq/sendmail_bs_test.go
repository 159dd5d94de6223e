package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
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
// greets with 421 (try again later) and exits 75.
func TestSendmailSMTPDaemonDown(t *testing.T) {
	s := newSendmailSetup(t, "")
	res := runSendmailTest("EHLO x\r\n", "-c", s.config, "-bs")
	if res.code != exitTempFail || !strings.HasPrefix(res.stdout, "421 4.3.2 host.test ") {
		t.Errorf("exit %d, stdout %q; want 75 and a 421 greeting", res.code, res.stdout)
	}
}

// TestNewaliases: newaliases (relayq installed under that name), sendmail
// -bi and sendmail -I succeed quietly: Debian's maintainer scripts run
// them after installing an MTA and abort when they fail. relayq has no
// aliases database to rebuild.
func TestNewaliases(t *testing.T) {
	s := newSendmailSetup(t, "")
	for _, argv := range [][]string{
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
