package tests

import (
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestOneHelloWithDefaultRelayConfig: SMTP on the unix socket → relayq
// with the built-in relay TLS settings (STARTTLS when offered, not
// required) → smtptest relay that offers no STARTTLS and, like OpenSMTPD,
// refuses a second EHLO in a session with 503 5.5.1. Every message is
// delivered, including after a transaction that ended in RSET (all its
// recipients refused), and the relay never hears EHLO twice in a session.
// Before, relayq said EHLO twice in every session and deferred everything.
func TestOneHelloWithDefaultRelayConfig(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{OneHello: true, Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"gone@example.net": smtptest.Times(5, smtptest.Reply(550, "5.1.1 No such user"))},
	}})
	d := startDaemon(t, relay)
	from := "cron@example.org"
	d.submit(t, from, []string{"gone@example.net"}, newMessage(1, from, []string{"gone@example.net"}, 3))
	d.waitQueueEmpty(t, 20*time.Second)
	for i := 2; i <= 4; i++ {
		to := []string{"a@example.net"}
		d.submit(t, from, to, newMessage(i, from, to, 3))
	}
	relay.WaitMessages(t, 3, 20*time.Second)
	d.waitQueueEmpty(t, 20*time.Second)
	if n := relay.RepeatedHellos(); n != 0 {
		t.Errorf("the relay heard EHLO again in a session %d time(s); commands:\n%s", n, strings.Join(relay.Commands(), "\n"))
	}
	if !slices.Contains(relay.Commands(), "RSET") {
		t.Errorf("no RSET: the case after RSET is not covered")
	}
	if strings.Contains(d.log.String(), "Already identified") {
		t.Errorf("the daemon log shows the relay's 503:\n%s", d.log.String())
	}
}

// TestBodyParameterFollowsContent: SMTP on the unix socket → relayq →
// smtptest relay offering 8BITMIME. A 7-bit message submitted with
// BODY=8BITMIME goes out without it; an 8-bit one submitted with BODY=7BIT
// (or none) goes out with BODY=8BITMIME: what relayq declares follows the
// bytes, not the submitter's parameter nor go-smtp's habit of declaring
// every message 8-bit.
func TestBodyParameterFollowsContent(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	cases := []struct {
		from, param, body string
		eightBit          bool
	}{
		{"seven-declared-eight@example.org", " BODY=8BITMIME", "Subject: plain\r\n\r\nascii only\r\n", false},
		{"seven-undeclared@example.org", "", "Subject: plain\r\n\r\nascii only\r\n", false},
		{"eight-declared-seven@example.org", " BODY=7BIT", "Subject: caf\xc3\xa9\r\n\r\ncaf\xc3\xa9\r\n", true},
		{"eight-undeclared@example.org", "", "Subject: x\r\n\r\nna\xefve\r\n", true},
	}
	for _, c := range cases {
		dialog(t, "unix", d.submitSocket(), []exchange{
			{"", "220 "},
			{"EHLO tests.localhost", "250"},
			{"MAIL FROM:<" + c.from + ">" + c.param, "250 "},
			{"RCPT TO:<r@example.net>", "250 "},
			{"DATA", "354 "},
			{c.body + ".", "250 "},
			{"QUIT", "221 "},
		})
	}
	got := relay.WaitMessages(t, len(cases), 20*time.Second)
	for _, c := range cases {
		i := slices.IndexFunc(got, func(m smtptest.Received) bool { return m.From == c.from })
		if i < 0 {
			t.Errorf("%s: not delivered", c.from)
			continue
		}
		if has := slices.Contains(got[i].MailParams, "BODY=8BITMIME"); has != c.eightBit {
			t.Errorf("%s: MAIL parameters %q, want BODY=8BITMIME %v", c.from, got[i].MailParams, c.eightBit)
		}
	}
}

// TestBareRepliesRelay: SMTP on the unix socket → relayq → smtptest relay
// that answers with bare codes (RFC 5321 §4.2: the text is optional):
// only "250" to the final dot, or every reply ("220", "250-" EHLO lines,
// "250", "354", "221"). Each message is delivered exactly once and no
// attempt is logged as a possible duplicate. Before, Go's textproto
// refused a bare code ("short response"): a bare 250 to the dot was an
// unknown outcome and every message went twice, and a relay answering bare
// everywhere got nothing.
func TestBareRepliesRelay(t *testing.T) {
	for name, opts := range map[string]smtptest.Options{
		"dot":   {Script: smtptest.Script{Body: smtptest.Times(3, smtptest.Step{Raw: "250\r\n"})}},
		"every": {BareReplies: true},
	} {
		t.Run(name, func(t *testing.T) {
			relay := smtptest.NewServer(t, opts)
			d := startDaemon(t, relay)
			from := "cron@example.org"
			for i := 1; i <= 3; i++ {
				to := []string{"a@example.net"}
				d.submit(t, from, to, newMessage(i, from, to, 3))
			}
			relay.WaitMessages(t, 3, 20*time.Second)
			d.waitQueueEmpty(t, 20*time.Second)
			if n := len(relay.Messages()); n != 3 {
				t.Errorf("the relay got %d messages, want 3 (each once)", n)
			}
			if log := d.log.String(); strings.Contains(log, "possible_duplicate") {
				t.Errorf("an attempt was logged as a possible duplicate:\n%s", log)
			}
		})
	}
}
