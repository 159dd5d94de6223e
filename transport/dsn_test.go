package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

func dsnMessage() *Message {
	m := message("s@example.org", "a@example.net", "b@example.net")
	m.DSN = DSN{Return: "HDRS", EnvelopeID: "id+1=x y"}
	m.RecipientDSN = []RecipientDSN{
		{Notify: []string{"SUCCESS", "FAILURE"}, OrigType: "RFC822", Orig: "alias@example.net"},
		{Notify: []string{"NEVER"}},
	}
	return m
}

// TestDSNPassedToRelay: RET and ENVID on MAIL, NOTIFY and ORCPT on each
// RCPT, exactly as submitted (ENVID xtext-encoded).
func TestDSNPassedToRelay(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{DSN: true})
	tr := newTransport(t, srv)
	mustSend(t, tr, dsnMessage())
	got := srv.WaitMessages(t, 1, time.Second)[0]
	for _, p := range []string{"RET=HDRS", "ENVID=id+2B1+3Dx+20y"} {
		if !slices.Contains(got.MailParams, p) {
			t.Errorf("MAIL parameters %q lack %s", got.MailParams, p)
		}
	}
	want := map[string][]string{
		"a@example.net": {"NOTIFY=SUCCESS,FAILURE", "ORCPT=RFC822;alias@example.net"},
		"b@example.net": {"NOTIFY=NEVER"},
	}
	for rcpt, params := range want {
		if !slices.Equal(got.RcptParams[rcpt], params) {
			t.Errorf("RCPT %s parameters %q, want %q", rcpt, got.RcptParams[rcpt], params)
		}
	}
}

// TestDSNOriginalRecipientUTF8: an ORCPT of type utf-8 whose address is
// ASCII goes as rfc822, the same address (OpenSMTPD refuses utf-8 ORCPTs
// with 553); one with non-ASCII stays utf-8.
func TestDSNOriginalRecipientUTF8(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{DSN: true, SMTPUTF8: true})
	m := dsnMessage()
	m.UTF8 = true
	m.RecipientDSN[0] = RecipientDSN{OrigType: "UTF-8", Orig: "alias@example.net"}
	m.RecipientDSN[1] = RecipientDSN{OrigType: "UTF-8", Orig: "rené@example.net"}
	mustSend(t, newTransport(t, srv), m)
	got := srv.WaitMessages(t, 1, time.Second)[0].RcptParams
	if p := got["a@example.net"]; !slices.Equal(p, []string{"ORCPT=RFC822;alias@example.net"}) {
		t.Errorf("RCPT a@example.net parameters %q, want the ASCII utf-8 ORCPT as rfc822", p)
	}
	if p := got["b@example.net"]; len(p) != 1 || !strings.HasPrefix(p[0], "ORCPT=UTF-8;") {
		t.Errorf("RCPT b@example.net parameters %q, want a utf-8 ORCPT", p)
	}
}

// TestDSNLeftOutWithoutExtension: a relay without DSN gets the message
// without the parameters (not a refusal), and the omission is logged once
// per connection.
func TestDSNLeftOutWithoutExtension(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	var logs bytes.Buffer
	tr := newTransport(t, srv, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	mustSend(t, tr, dsnMessage())
	mustSend(t, tr, dsnMessage())
	for _, m := range srv.WaitMessages(t, 2, time.Second) {
		if slices.ContainsFunc(m.MailParams, func(p string) bool { return strings.HasPrefix(p, "RET=") || strings.HasPrefix(p, "ENVID=") }) || len(m.RcptParams) > 0 {
			t.Errorf("relay without DSN got MAIL %q, RCPT %q", m.MailParams, m.RcptParams)
		}
	}
	if n := strings.Count(logs.String(), "relay does not offer DSN"); n != 1 {
		t.Errorf("omission logged %d times on one connection, want once:\n%s", n, logs.String())
	}
}

// TestDSNEnvelopeIDAtTheLimit: an ENVID of 100 characters in xtext (96
// decoded) goes out as it is; one more character is refused
// (TestDSNInvalidRefused), so that no relay sees an ENVID over the limit.
func TestDSNEnvelopeIDAtTheLimit(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{DSN: true})
	m := dsnMessage()
	m.DSN.EnvelopeID = strings.Repeat("x", 94) + "+="
	mustSend(t, newTransport(t, srv), m)
	want := "ENVID=" + strings.Repeat("x", 94) + "+2B+3D"
	if got := srv.WaitMessages(t, 1, time.Second)[0].MailParams; !slices.Contains(got, want) || len(want)-len("ENVID=") != maxEnvelopeID {
		t.Errorf("MAIL parameters %q, want %s (100 characters)", got, want)
	}
}

// TestDSNInvalidRefused: DSN values go-smtp would not send are a
// permanent local refusal, and nothing reaches the relay.
func TestDSNInvalidRefused(t *testing.T) {
	for name, edit := range map[string]func(*Message){
		"RET":             func(m *Message) { m.DSN.Return = "ALL" },
		"ENVID control":   func(m *Message) { m.DSN.EnvelopeID = "a\r\nRSET" },
		"ENVID too long":  func(m *Message) { m.DSN.EnvelopeID = strings.Repeat("x", 101) },
		"ENVID xtext":     func(m *Message) { m.DSN.EnvelopeID = strings.Repeat("x", 96) + "+=" }, // 102 as sent
		"ORCPT xtext":     func(m *Message) { m.RecipientDSN[0].Orig = strings.Repeat("x", 494) + "++@x" },
		"NOTIFY NEVER+":   func(m *Message) { m.RecipientDSN[1].Notify = []string{"NEVER", "DELAY"} },
		"NOTIFY twice":    func(m *Message) { m.RecipientDSN[1].Notify = []string{"DELAY", "DELAY"} },
		"ORCPT type":      func(m *Message) { m.RecipientDSN[0].OrigType = "X400" },
		"ORCPT non-ASCII": func(m *Message) { m.RecipientDSN[0].Orig = "rené@example.net" },
		"not parallel":    func(m *Message) { m.RecipientDSN = m.RecipientDSN[:1] },
	} {
		t.Run(name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{DSN: true})
			tr := newTransport(t, srv)
			m := dsnMessage()
			edit(m)
			_, err := send(t, tr, m)
			te := wantError(t, err, StageMail, false)
			var le *LocalError
			if !errors.As(te, &le) || le.Reply.Code != 501 || le.Reply.EnhancedCode != (smtp.EnhancedCode{5, 5, 4}) {
				t.Errorf("err = %v, want a local 501 5.5.4", err)
			}
			if srv.Connections() != 0 {
				t.Errorf("connected to the relay for a message with bad DSN parameters")
			}
		})
	}
}

// TestSizeLimitReason: the dead-letter reason names both sizes.
func TestSizeLimitReason(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{MaxSize: 26214400})
	tr := newTransport(t, srv)
	m := message("s@example.org", "r@example.net")
	m.Size = 31457280
	_, err := send(t, tr, m)
	wantError(t, err, StageMail, false)
	if want := "message size 31457280 exceeds the relay's SIZE limit 26214400"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to say %q", err, want)
	}
}
