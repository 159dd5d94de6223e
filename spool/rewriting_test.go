package spool

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestRewritingAtRCPT: Options.Rewriting maps each RCPT to its addresses
// (an alias to two, kept once when named again), refuses what it maps to
// nothing with 550 5.1.1 and what maps to an invalid address with 553
// 5.1.3, and rewrites the sender and the header before the message is
// queued; the recipients' NOTIFY goes with each address they map to.
func TestRewritingAtRCPT(t *testing.T) {
	rw := Rewriting{
		Recipient: func(a string) ([]string, error) {
			switch a {
			case "root@vm":
				return []string{"ops@example.com", "oncall@example.com"}, nil
			case "nobody@vm":
				return nil, errors.New("unknown")
			case "broken@vm":
				return []string{"no domain"}, nil
			}
			return []string{a}, nil
		},
		Message: func(from string, msg []byte) (string, []byte) {
			return "rewritten@example.com", append([]byte("X-Rewritten: yes\r\n"), msg...)
		},
	}
	s := startServer(t, Options{Rewriting: rw})
	c := newClient(t, dial(t, s, "unix"))
	c.run([]step{
		{expect: "220 "},
		{send: "EHLO test", expect: "250 "},
		{send: "MAIL FROM:<backup@vm>", expect: "250 "},
		{send: "RCPT TO:<root@vm> NOTIFY=FAILURE", expect: "250 "},
		{send: "RCPT TO:<nobody@vm>", expect: "550 5.1.1 "},
		{send: "RCPT TO:<broken@vm>", expect: "553 5.1.3 "},
		{send: "RCPT TO:<oncall@example.com>", expect: "250 "},
		{send: "DATA", expect: "354 "},
		{raw: "Subject: s\r\n\r\nbody\r\n.\r\n", expect: "250 "},
	})
	msgs, bodies := queued(t, s.opts.Queue)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	m := msgs[0]
	if want := []string{"ops@example.com", "oncall@example.com"}; !slices.Equal(addresses(m.Recipients), want) {
		t.Errorf("recipients %q, want %q", addresses(m.Recipients), want)
	}
	for _, r := range m.Recipients {
		if !slices.Equal(r.DSN.Notify, []string{"FAILURE"}) {
			t.Errorf("%s: NOTIFY %q, want root's FAILURE", r.Address, r.DSN.Notify)
		}
	}
	if m.From != "rewritten@example.com" || !strings.Contains(bodies[0], "X-Rewritten: yes\r\n") {
		t.Errorf("from %q, body %q; want both rewritten", m.From, bodies[0])
	}
}
