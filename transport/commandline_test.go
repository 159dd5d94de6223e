package transport

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestCommandLinesAsGoSMTP: for random addresses and options (DSN, AUTH=,
// REQUIRETLS, SMTPUTF8, sizes, line breaks, the RCPT extensions) and
// relays offering random extensions, every MAIL and RCPT line written here
// is the one go-smtp's client writes, and a line go-smtp refuses is never
// written here. A bench transaction (sender, recipient, size; a relay like
// Postfix) is written here, not by go-smtp.
func TestCommandLinesAsGoSMTP(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 5))
	plainMail, plainRcpt := 0, 0
	for i := range 20000 {
		ehlo := randomEHLO(rng)
		w, err := newCommandWriter(ehlo, "client.example")
		if err != nil {
			t.Fatal(err)
		}
		from, mopts := pick(rng, addresses), randomMailOptions(rng)
		w.line = w.line[:0]
		wantErr := w.client.Mail(from, mopts)
		want := bytes.Clone(w.line)
		if got, ok := w.ext.appendMail(nil, from, mopts); ok {
			plainMail++
			if wantErr != nil || !bytes.Equal(got, want) {
				t.Fatalf("case %d: MAIL %q %+v to a relay saying %q:\nhere   %q\ngo-smtp %q, %v", i, from, mopts, ehlo, got, want, wantErr)
			}
		}
		to, ropts := pick(rng, addresses), randomRcptOptions(rng)
		w.line = w.line[:0]
		wantErr = w.client.Rcpt(to, ropts)
		want = bytes.Clone(w.line)
		if got, ok := w.ext.appendRcpt(nil, to, ropts); ok {
			plainRcpt++
			if wantErr != nil || !bytes.Equal(got, want) {
				t.Fatalf("case %d: RCPT %q %+v to a relay saying %q:\nhere   %q\ngo-smtp %q, %v", i, to, ropts, ehlo, got, want, wantErr)
			}
		}
	}
	t.Logf("plain lines written here: %d MAIL, %d RCPT of 20000", plainMail, plainRcpt)
	if plainMail < 2000 || plainRcpt < 2000 {
		t.Errorf("only %d MAIL and %d RCPT lines were plain", plainMail, plainRcpt)
	}
	postfix := []byte("250-relay.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n")
	w, err := newCommandWriter(postfix, "client.example")
	if err != nil {
		t.Fatal(err)
	}
	m := &Message{From: "load@bench.test", Recipients: []string{"sink@bench.test"}, Size: 5000}
	if _, ok := w.ext.appendMail(nil, m.From, mailOptions(m)); !ok {
		t.Errorf("a bench MAIL is not plain")
	}
	if _, ok := w.ext.appendRcpt(nil, m.Recipients[0], rcptOptions(m, 0)); !ok {
		t.Errorf("a bench RCPT is not plain")
	}
}

// TestCommandWriterKeepsNoRecipients: to a relay offering DSN, RCPTs with
// NOTIFY are go-smtp's, which keeps their recipients until its next MAIL:
// that MAIL is then go-smtp's too, so they are not kept for as long as
// the connection lives.
func TestCommandWriterKeepsNoRecipients(t *testing.T) {
	w, err := newCommandWriter([]byte("250-relay.example\r\n250 DSN\r\n"), "client.example")
	if err != nil {
		t.Fatal(err)
	}
	notify := &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}}
	for range 3 {
		if _, err := w.mail("a@x.org", &smtp.MailOptions{}); err != nil {
			t.Fatal(err)
		}
		if w.rcpts {
			t.Fatalf("go-smtp's client still holds recipients after a MAIL")
		}
		if _, err := w.rcpt("b@x.org", notify); err != nil {
			t.Fatal(err)
		}
		if !w.rcpts {
			t.Fatalf("a RCPT with NOTIFY was not go-smtp's")
		}
	}
}

var addresses = []string{"a@x.org", "load@bench.test", "", "jörg@exämple.org", "a\r\n@x.org", "a\n", "<x>", "a b@x.org", "postmaster"}

func pick[T any](rng *rand.Rand, from []T) T { return from[rng.IntN(len(from))] }

func randomEHLO(rng *rand.Rand) []byte {
	lines := []string{"relay.example"}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SIZE 1000", "SIZE", "SMTPUTF8", "DSN", "REQUIRETLS", "AUTH PLAIN", "RRVS", "DELIVERBY", "MT-PRIORITY", "CHUNKING"} {
		if rng.IntN(2) == 0 {
			lines = append(lines, ext)
		}
	}
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + l + "\r\n")
	}
	return []byte(b.String())
}

func randomMailOptions(rng *rand.Rand) *smtp.MailOptions {
	if rng.IntN(10) == 0 {
		return nil
	}
	o := &smtp.MailOptions{Size: pick(rng, []int64{0, 5000, 1 << 40, -1}), UTF8: rng.IntN(3) == 0, RequireTLS: rng.IntN(8) == 0}
	o.Return = pick(rng, []smtp.DSNReturn{"", "", "", smtp.DSNReturnFull, smtp.DSNReturnHeaders, "BAD"})
	o.EnvelopeID = pick(rng, []string{"", "", "", "env+1", "é"})
	if rng.IntN(8) == 0 {
		auth := pick(rng, []string{"<>", "a@x.org"})
		o.Auth = &auth
	}
	return o
}

func randomRcptOptions(rng *rand.Rand) *smtp.RcptOptions {
	if rng.IntN(4) == 0 {
		return nil
	}
	o := &smtp.RcptOptions{}
	if rng.IntN(3) == 0 {
		o.Notify = []smtp.DSNNotify{pick(rng, []smtp.DSNNotify{smtp.DSNNotifyNever, smtp.DSNNotifyFailure, "BAD"})}
	}
	if rng.IntN(3) == 0 {
		o.OriginalRecipient, o.OriginalRecipientType = pick(rng, addresses), pick(rng, []smtp.DSNAddressType{smtp.DSNAddressTypeRFC822, smtp.DSNAddressTypeUTF8, ""})
	}
	if rng.IntN(8) == 0 {
		o.RequireRecipientValidSince = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	}
	if rng.IntN(8) == 0 {
		o.DeliverBy = &smtp.DeliverByOptions{Time: time.Hour, Mode: smtp.DeliverByNotify}
	}
	if rng.IntN(8) == 0 {
		p := rng.IntN(20) - 10
		o.MTPriority = &p
	}
	return o
}
