package spool

import (
	"io"
	"strings"
	"testing"
)

// TestDataLineEndings: whatever CRs come before it, a line that starts
// after CRLF is a line: its stuffed dot is removed and "." CRLF ends the
// data. go-smtp v0.25.1 alone keeps both dots after "CR CR LF", never sees
// the end of data after "CR CR LF" (the client waits for its reply until
// the read timeout), and drops the CR of a line ". CR x".
func TestDataLineEndings(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"stuffed line after CR CR LF", "Subject: x\r\n\r\nline\r\r\n..dot\r\n.\r\n", "Subject: x\r\n\r\nline\r\n\r\n.dot\r\n"},
		{"end of data after CR CR LF", "Subject: x\r\n\r\nline\r\r\n.\r\n", "Subject: x\r\n\r\nline\r\n\r\n"},
		{"CR CR CR LF", "Subject: x\r\n\r\na\r\r\r\n..b\r\n.\r\n", "Subject: x\r\n\r\na\r\n\r\n\r\n.b\r\n"},
		{"CR after a leading dot is text", "Subject: x\r\n\r\n.\rx\r\n.\r\n", "Subject: x\r\n\r\n\r\nx\r\n"},
		{"dot after a bare CR is not stuffing", "Subject: x\r\n\r\na\r.b\r\n.\r\n", "Subject: x\r\n\r\na\r\n.b\r\n"},
		{"dot line after a bare LF does not end the data", "Subject: x\r\n\r\na\n.\nb\r\n.\r\n", "Subject: x\r\n\r\na\r\n.\r\nb\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{})
			c := newClient(t, dial(t, s, "unix"))
			c.run(append(toRcpt(), []step{
				{send: "DATA", expect: "354"},
				{raw: tc.data, expect: "250 2.0.0 Ok: queued as"},
				{send: "NOOP", expect: "250"},
			}...))
			_, bodies := queued(t, s.opts.Queue)
			if len(bodies) != 1 || bodies[0] != tc.want {
				t.Fatalf("queued %q, want one message %q", bodies, tc.want)
			}
		})
	}
}

// toRcpt is a dialog up to a recipient accepted.
func toRcpt() []step {
	return []step{
		{expect: "220"},
		{send: "EHLO client.example", expect: "250"},
		{send: "MAIL FROM:<a@example.org>", expect: "250"},
		{send: "RCPT TO:<b@example.net>", expect: "250"},
	}
}

// TestDataSentBefore354: a client that sends its message with DATA,
// without waiting for the 354, and pipelines a command after the end of
// data, gets the message queued as sent and its command answered.
func TestDataSentBefore354(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, dial(t, s, "unix"))
	c.run(append(toRcpt(), []step{
		{raw: "DATA\r\nSubject: x\r\n\r\nline\r\r\n..dot\r\n.\r\nRSET\r\n", expect: "354"},
		{expect: "250 2.0.0 Ok: queued as"},
		{expect: "250"}, // RSET
		{send: "QUIT", expect: "221"},
	}...))
	_, bodies := queued(t, s.opts.Queue)
	if want := "Subject: x\r\n\r\nline\r\n\r\n.dot\r\n"; len(bodies) != 1 || bodies[0] != want {
		t.Fatalf("queued %q, want one message %q", bodies, want)
	}
}

// TestGreetingNamesServer: the first line of the reply to EHLO and to HELO
// begins with the server's name (RFC 5321 §4.1.1.1); go-smtp writes
// "250-Hello <client>", which clients read as a server called "Hello".
func TestGreetingNamesServer(t *testing.T) {
	s := startServer(t, Options{Hostname: "mx.relayq.test"})
	for _, network := range []string{"unix", "tcp"} {
		for _, cmd := range []string{"EHLO", "HELO"} {
			nc := dial(t, s, network)
			c := newClient(t, nc)
			c.run([]step{{expect: "220 mx.relayq.test"}})
			io.WriteString(nc, cmd+" client.example\r\n")
			line, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(line, "250-mx.relayq.test ") && !strings.HasPrefix(line, "250 mx.relayq.test") {
				t.Errorf("%s over %s: first reply line %q, want 250 with the server's name", cmd, network, line)
			}
		}
	}
}
