package spool

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"relayq/queue"
)

var dsnEnvelope = queue.Envelope{
	From:       "cron@example.org",
	Recipients: []string{"a@example.com", "b@example.com", "c@example.com"},
	DSN:        queue.DSN{Return: "HDRS", EnvelopeID: "job 42+x=y"},
	RecipientDSN: []queue.RecipientDSN{
		{Notify: []string{"SUCCESS", "DELAY"}, OrigType: "RFC822", Orig: "alias@example.com"},
		{},
		{Notify: []string{"NEVER"}, OrigType: "UTF-8", Orig: "jörg@exämple.de"},
	},
}

// checkDSNQueued asserts the message queued carries env's DSN request.
func checkDSNQueued(t *testing.T, m *queue.Message, env queue.Envelope) {
	t.Helper()
	if m.DSN != env.DSN {
		t.Errorf("queued RET/ENVID %+v, want %+v", m.DSN, env.DSN)
	}
	for i, r := range m.Recipients {
		if !reflect.DeepEqual(r.DSN, env.RecipientDSN[i]) {
			t.Errorf("recipient %s: queued %+v, want %+v", r.Address, r.DSN, env.RecipientDSN[i])
		}
	}
}

// TestDSNDialog: intake takes RET, ENVID, NOTIFY and ORCPT as RFC 3461
// writes them and keeps them, decoded, with the message.
func TestDSNDialog(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	c := newClient(t, dial(t, s, "unix"))
	c.run(dialog(hello, []step{
		{send: "MAIL FROM:<cron@example.org> RET=hdrs ENVID=job+2042+2Bx+3Dy", expect: "250 2.0.0"},
		{send: "RCPT TO:<a@example.com> NOTIFY=success,delay ORCPT=rfc822;alias@example.com", expect: "250 2.0.0"},
		{send: "RCPT TO:<b@example.com>", expect: "250 2.0.0"},
		{send: "RCPT TO:<c@example.com> NOTIFY=NEVER ORCPT=utf-8;j\\x{F6}rg@ex\\x{E4}mple.de", expect: "250 2.0.0"},
		{send: "DATA", expect: "354 "},
		{raw: "x\r\n.\r\n", expect: queuedReply},
	}))
	c.conn.Close()
	shutdown(t, s)
	msgs, _ := queued(t, q)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	checkDSNQueued(t, msgs[0], dsnEnvelope)
}

// TestDSNRefused: bad DSN values get 501 5.5.4 with a text naming the
// problem, and the session goes on.
func TestDSNRefused(t *testing.T) {
	tests := []struct{ cmd, reply string }{
		{"MAIL FROM:<a@example.org> RET=ALL", "501 5.5.4 Unknown RET value"},
		{"MAIL FROM:<a@example.org> ENVID=" + strings.Repeat("x", 101), "501 5.5.4 ENVID longer than 100 characters"},
		{"MAIL FROM:<a@example.org> ENVID=a+0Db", "501 5.5.4 Malformed ENVID parameter value"},
		// 98 characters decoded, 102 in xtext: OpenSMTPD would refuse it.
		{"MAIL FROM:<a@example.org> ENVID=" + strings.Repeat("x", 96) + "+2B+3D", "501 5.5.4 ENVID longer than 100 characters in xtext"},
		{"RCPT TO:<b@example.com> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Malformed NOTIFY parameter value"},
		{"RCPT TO:<b@example.com> NOTIFY=SOMETIMES", "501 5.5.4 Malformed NOTIFY parameter value"},
		{"RCPT TO:<b@example.com> ORCPT=x400;abc", "501 5.5.4 Malformed ORCPT parameter value"},
		{"RCPT TO:<b@example.com> ORCPT=rfc822;" + strings.Repeat("x", 501), "501 5.5.4 ORCPT longer than 500 characters"},
		{"RCPT TO:<b@example.com> ORCPT=rfc822;" + strings.Repeat("x", 494) + "+2B+2B@x", "501 5.5.4 ORCPT longer than 500 characters in xtext"},
		{"RCPT TO:<b@example.com> ORCPT=utf-8;a\\x{7}b@example.com", "501 5.5.4 Malformed ORCPT parameter value"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd[:min(len(tt.cmd), 40)], func(t *testing.T) {
			s := startServer(t, Options{})
			c := newClient(t, dial(t, s, "unix"))
			steps := hello
			if strings.HasPrefix(tt.cmd, "RCPT") {
				steps = dialog(hello, []step{{send: "MAIL FROM:<a@example.org>", expect: "250 "}})
			}
			c.run(dialog(steps, []step{{send: tt.cmd, expect: tt.reply}, {send: "NOOP", expect: "250 "}}))
		})
	}
}

// TestSubmitDSN: `relayq sendmail`'s client passes the request on, and
// refuses a bad one before connecting.
func TestSubmitDSN(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServer(t, Options{Queue: q})
	id, err := Submit(context.Background(), s.opts.Socket, dsnEnvelope, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	checkDSNQueued(t, m, dsnEnvelope)

	bad := dsnEnvelope
	bad.DSN.Return = "ALL"
	if _, err := Submit(context.Background(), s.opts.Socket, bad, []byte("x\r\n")); !errors.Is(err, ErrBadDSN) || errors.Is(err, ErrUnreachable) {
		t.Errorf("Submit with RET=ALL: %v, want ErrBadDSN (and no maildrop fallback)", err)
	}
}

// TestMaildropDSN: the request survives the maildrop (daemon down).
func TestMaildropDSN(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	if _, err := WriteMaildrop(dir, dsnEnvelope, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background()); err != nil || n != 1 {
		t.Fatalf("Import = %d, %v", n, err)
	}
	msgs, _ := queued(t, q)
	checkDSNQueued(t, msgs[0], dsnEnvelope)

	bad := dsnEnvelope
	bad.RecipientDSN = []queue.RecipientDSN{{Notify: []string{"NEVER", "DELAY"}}, {}, {}}
	if _, err := WriteMaildrop(dir, bad, []byte("x\r\n")); !errors.Is(err, ErrBadDSN) {
		t.Errorf("WriteMaildrop with NOTIFY=NEVER,DELAY: %v, want ErrBadDSN", err)
	}
}

func TestXtextRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a b+c=d", "jörg\x00\r\n"} {
		enc := xtextEncode(s)
		if strings.ContainsAny(enc, " \r\n=") {
			t.Errorf("xtext of %q is %q", s, enc)
		}
		if dec, err := xtextDecode(enc); err != nil || dec != s {
			t.Errorf("xtext round trip of %q: %q, %v", s, dec, err)
		}
	}
	for _, bad := range []string{"a+", "a+4", "a+ZZ", "a b", "a=b"} {
		if _, err := xtextDecode(bad); err == nil {
			t.Errorf("xtextDecode(%q) took it", bad)
		}
	}
}

// TestSMTPUTF8Autodetect: SMTPUTF8 is kept only when the message needs
// it: a non-ASCII address, or non-ASCII headers from a client that asked.
func TestSMTPUTF8Autodetect(t *testing.T) {
	tests := []struct {
		name  string
		mail  string
		rcpt  string
		data  string
		utf8  bool
		eight bool
	}{
		{"asked, ASCII only", "MAIL FROM:<a@example.org> SMTPUTF8", "a@example.com", "Subject: hi\r\n\r\nx\r\n", false, false},
		{"asked, UTF-8 header", "MAIL FROM:<a@example.org> SMTPUTF8", "a@example.com", "Subject: caf\xc3\xa9\r\n\r\nx\r\n", true, true},
		{"asked, UTF-8 body only", "MAIL FROM:<a@example.org> SMTPUTF8", "a@example.com", "Subject: hi\r\n\r\ncaf\xc3\xa9\r\n", false, true},
		{"not asked, UTF-8 address", "MAIL FROM:<a@example.org>", "jörg@exämple.de", "x\r\n", true, false},
		{"not asked, 8-bit header", "MAIL FROM:<a@example.org> BODY=8BITMIME", "a@example.com", "Subject: caf\xc3\xa9\r\n\r\nx\r\n", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openQueue(t, queue.Options{})
			s := startServer(t, Options{Queue: q})
			c := newClient(t, dial(t, s, "unix"))
			c.run(dialog(hello, []step{
				{send: tt.mail, expect: "250 "},
				{send: "RCPT TO:<" + tt.rcpt + ">", expect: "250 "},
				{send: "DATA", expect: "354 "},
				{raw: tt.data + ".\r\n", expect: queuedReply},
			}))
			c.conn.Close()
			shutdown(t, s)
			msgs, _ := queued(t, q)
			if m := msgs[0]; m.UTF8 != tt.utf8 || m.EightBit != tt.eight {
				t.Errorf("SMTPUTF8 %v 8BITMIME %v, want %v %v", m.UTF8, m.EightBit, tt.utf8, tt.eight)
			}
		})
	}
}
