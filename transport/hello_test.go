package transport

import (
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestOneHelloPerSession: relayq says EHLO (LHLO) once per session, and
// once more only after STARTTLS (RFC 3207), whatever the TLS setting and
// however many transactions the pooled connection carries, RSETs
// included. A relay that refuses a second greeting (OpenSMTPD: "503 5.5.1
// Already identified") gets every message: before, a relay without
// STARTTLS heard EHLO twice and every message was deferred.
func TestOneHelloPerSession(t *testing.T) {
	cases := []struct {
		name   string
		opts   smtptest.Options
		edit   func(*Options)
		hellos int // EHLO/LHLO in the one session: 2 with STARTTLS
	}{
		{"no STARTTLS offered", smtptest.Options{}, func(*Options) {}, 1},
		{"STARTTLS", smtptest.Options{TLS: true}, func(*Options) {}, 2},
		{"implicit TLS", smtptest.Options{ImplicitTLS: true}, secure, 1},
		{"TLS ignored", smtptest.Options{TLS: true}, func(o *Options) { o.IgnoreTLS = true }, 1},
		{"LMTP", smtptest.Options{LMTP: true}, lmtp, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.OneHello = true
			// The first message's first recipient is refused: relayq
			// goes on with the other, and the LMTP transaction ends
			// with RSET; the third message has only refused
			// recipients, so RSET ends it.
			c.opts.Script = smtptest.Script{Rcpt: map[string][]smtptest.Step{
				"refused@example.net": smtptest.Times(2, smtptest.Reply(550, "5.1.1 No such user")),
			}}
			srv := smtptest.NewServer(t, c.opts)
			tr := newTransport(t, srv, c.edit)
			res, err := send(t, tr, message("s@example.org", "refused@example.net", "r@example.net"))
			if err != nil || res.Recipients[1].Err != nil {
				t.Fatalf("first message: %v, %+v", err, res)
			}
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if res, err := send(t, tr, message("s@example.org", "refused@example.net")); err != nil || res.Recipients[0].Err == nil {
				t.Fatalf("third message, its only recipient refused: %v, %+v", err, res)
			}
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			srv.WaitMessages(t, 3, 5*time.Second)
			if n := srv.Connections(); n != 1 {
				t.Errorf("%d connections, want the 4 transactions on 1", n)
			}
			if n := srv.RepeatedHellos(); n != 0 {
				t.Errorf("%d repeated hellos in a session, want 0; commands:\n%s", n, strings.Join(srv.Commands(), "\n"))
			}
			if n := len(srv.Hellos()); n != c.hellos {
				t.Errorf("%d hellos, want %d; commands:\n%s", n, c.hellos, strings.Join(srv.Commands(), "\n"))
			}
			if !slices.Contains(srv.Commands(), "RSET") {
				t.Errorf("no RSET: the case after RSET is not covered; commands:\n%s", strings.Join(srv.Commands(), "\n"))
			}
		})
	}
}

// TestHelloTranscript: the transcript and the debug log show the one EHLO
// the relay heard, not the ones go-smtp's client was answered locally.
func TestHelloTranscript(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{OneHello: true})
	log, capture := debugLogger()
	tr := newTransport(t, srv, func(o *Options) { o.Debug, o.Logger = true, log })
	res := mustSend(t, tr, message("s@example.org", "r@example.net"))
	if n := strings.Count(res.Transcript, "C: EHLO "); n != 1 {
		t.Errorf("transcript has %d EHLO, want 1:\n%s", n, res.Transcript)
	}
	conv := capture.conversation(t)
	if n := len(slices.DeleteFunc(slices.Clone(conv), func(l string) bool { return !strings.HasPrefix(l, "C: EHLO ") })); n != 1 {
		t.Errorf("debug log has %d EHLO, want 1:\n%s", n, strings.Join(conv, "\n"))
	}
}

// TestBody8BitMIMEOnlyFor8BitContent: MAIL carries BODY=8BITMIME for a
// message with 8-bit octets, and not for a 7-bit one, though the relay
// offers 8BITMIME (go-smtp adds it to every MAIL then), on one connection
// whatever the order.
func TestBody8BitMIMEOnlyFor8BitContent(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv)
	eightBit := []bool{false, true, false, true, true, false}
	for _, eight := range eightBit {
		m := message("s@example.org", "r@example.net")
		m.EightBit = eight
		mustSend(t, tr, m)
	}
	for i, got := range srv.WaitMessages(t, len(eightBit), 5*time.Second) {
		if has := slices.Contains(got.MailParams, "BODY=8BITMIME"); has != eightBit[i] {
			t.Errorf("message %d (8-bit %v): MAIL parameters %q", i, eightBit[i], got.MailParams)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
