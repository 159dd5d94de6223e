package tests

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// TestDSNSendmail: relayq sendmail -N -R -V → relayq (unix socket) →
// smtptest relay offering DSN. The relay receives RET, ENVID and, for each
// recipient, NOTIFY exactly as asked.
func TestDSNSendmail(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{DSN: true})
	d := startDaemon(t, relay)
	to := []string{"alice@example.net", "bob@example.net"}
	res := d.sendmail(newMessage(1, "dsn@example.org", to, 3),
		"-f", "dsn@example.org", "-N", "success,failure", "-R", "hdrs", "-V", "batch-7", to[0], to[1])
	if res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	got := relay.WaitMessages(t, 1, 20*time.Second)[0]
	for _, p := range []string{"RET=HDRS", "ENVID=batch-7"} {
		if !slices.Contains(got.MailParams, p) {
			t.Errorf("MAIL parameters %q lack %s", got.MailParams, p)
		}
	}
	for _, rcpt := range to {
		if p := got.RcptParams[rcpt]; !slices.Equal(p, []string{"NOTIFY=SUCCESS,FAILURE"}) {
			t.Errorf("RCPT %s parameters %q, want NOTIFY=SUCCESS,FAILURE", rcpt, p)
		}
	}
}

// TestDSNSMTPSubmission: SMTP with RET/ENVID/NOTIFY/ORCPT on the unix
// socket → relayq → two relays, one offering DSN (gets every parameter,
// ENVID and ORCPT re-encoded exactly) and, after a restart on a relay
// without DSN, none (the message is still delivered). Bad values are
// refused at intake with 501 5.5.4.
func TestDSNSMTPSubmission(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{DSN: true})
	d := startDaemon(t, relay)
	from, to := "dsn@example.org", []string{"alice@example.net", "bob@example.net"}
	if _, err := submitDSN(d.submitSocket(), from, to, newMessage(2, from, to, 3)); err != nil {
		t.Fatal(err)
	}
	got := relay.WaitMessages(t, 1, 20*time.Second)[0]
	for _, p := range []string{"RET=FULL", "ENVID=Q+2B1+3D2"} {
		if !slices.Contains(got.MailParams, p) {
			t.Errorf("MAIL parameters %q lack %s", got.MailParams, p)
		}
	}
	if p := got.RcptParams["alice@example.net"]; !slices.Equal(p, []string{"NOTIFY=DELAY", "ORCPT=RFC822;orig+2Balice@example.net"}) {
		t.Errorf("RCPT alice parameters %q", p)
	}
	if p := got.RcptParams["bob@example.net"]; p != nil {
		t.Errorf("RCPT bob parameters %q, want none", p)
	}

	dialog(t, "unix", d.submitSocket(), []exchange{
		{"", "220 "},
		{"EHLO tests.localhost", "250"},
		{"MAIL FROM:<a@example.org> RET=BODY", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> ENVID=" + strings.Repeat("e", 101), "501 5.5.4 ENVID longer than 100"},
		{"MAIL FROM:<a@example.org>", "250 "},
		{"RCPT TO:<b@example.net> NOTIFY=NEVER,DELAY", "501 5.5.4"},
		{"RCPT TO:<b@example.net> ORCPT=bogus", "501 5.5.4"},
		{"QUIT", "221 "},
	})

	plain := smtptest.NewServer(t, smtptest.Options{})
	d.stop()
	d.settings.set("relay", "url", tomlString(relayURL(plain, false)))
	d.writeConfig()
	d.start()
	if _, err := submitDSN(d.submitSocket(), from, to, newMessage(3, from, to, 3)); err != nil {
		t.Fatal(err)
	}
	got = plain.WaitMessages(t, 1, 20*time.Second)[0]
	if len(got.RcptParams) != 0 || slices.ContainsFunc(got.MailParams, func(p string) bool { return strings.HasPrefix(p, "RET=") }) {
		t.Errorf("relay without DSN got MAIL %q RCPT %q", got.MailParams, got.RcptParams)
	}
}

// submitDSN submits over SMTP with RET=FULL ENVID="Q+1=2", and for the
// first recipient NOTIFY=DELAY ORCPT=rfc822;orig+alice@example.net.
func submitDSN(socket, from string, to []string, body []byte) (string, error) {
	c, err := helloSMTP("unix", socket, time.Minute)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Mail(from, &smtp.MailOptions{Return: smtp.DSNReturnFull, EnvelopeID: "Q+1=2"}); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	for i, rcpt := range to {
		var o *smtp.RcptOptions
		if i == 0 {
			o = &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyDelayed}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "orig+alice@example.net"}
		}
		if err := c.Rcpt(rcpt, o); err != nil {
			return "", fmt.Errorf("RCPT %s: %w", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, c.Quit()
}

// TestSizeOverRelayLimit: SMTP on the unix socket → relayq → smtptest
// relay advertising SIZE 2000. A 5000-byte message is dead-lettered at the
// first attempt, without a MAIL to the relay, and `relayq dead list` gives
// the reason with both sizes; a small one is delivered. The sender's
// notice gives the status relayq chose (5.3.4) but presents the reason as
// relayq's own (Diagnostic-Code "x-relayq;", no Remote-MTA), not as a
// reply of the relay, which never saw the message.
func TestSizeOverRelayLimit(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{MaxSize: 2000})
	d := startDaemon(t, relay, func(s settings) { s.set("notify", "bounce", `"sender"`) })
	from, to := "big@example.org", []string{"alice@example.net"}
	big := newMessage(1, from, to, 80)
	id := d.submit(t, from, to, big)
	d.submit(t, from, to, newMessage(2, from, to, 2))
	relay.WaitMessages(t, 2, 20*time.Second) // the small one and the notice
	d.waitQueueEmpty(t, 10*time.Second)
	dl, ok := findDead(d.deadList(t), id)
	if !ok {
		t.Fatalf("message %s not in dead list", id)
	}
	// The size sent is the stored message's: relayq's Received before it.
	if dl.Size <= int64(len(big)) {
		t.Errorf("dead letter of %d bytes, want the %d submitted and relayq's Received", dl.Size, len(big))
	}
	want := fmt.Sprintf("message size %d exceeds the relay's SIZE limit 2000", dl.Size)
	if r := dl.Recipients[0]; r.ReplyCode != 552 || r.Enhanced != "5.3.4" || !strings.Contains(r.LastReply, want) || dl.Attempts != 1 {
		t.Errorf("dead recipient %+v after %d attempts, want 552 5.3.4 %q after 1", r, dl.Attempts, want)
	}
	res := runCmd(relayqBin, nil, "dead", "list", "-c", d.config)
	if !strings.Contains(res.stdout, want) {
		t.Errorf("relayq dead list does not give the reason %q:\n%s", want, res.stdout)
	}
	if n := len(relay.MailTimes()); n != 2 {
		t.Errorf("relay saw %d MAIL commands, want 2 (the small message and the notice)", n)
	}
	got := bounces(relay)
	if len(got) != 1 {
		t.Fatalf("relay got %d notices, want 1", len(got))
	}
	rcpts, text := readReport(t, got[0].Body)
	r := rcpts[0]
	if r.Get("Status") != "5.3.4" || r.Get("Diagnostic-Code") != "x-relayq; refused by relayq: "+want || r.Get("Remote-Mta") != "" {
		t.Errorf("notice's recipient fields %v, want Status 5.3.4, Diagnostic-Code %q and no Remote-MTA", r, "x-relayq; refused by relayq: "+want)
	}
	if !strings.Contains(text, "refused by relayq: "+want) {
		t.Errorf("notice's text for people does not give the reason:\n%s", text)
	}
}
