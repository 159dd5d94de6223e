package tests

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"relayq/transport/smtptest"
)

// End-to-end tests of [notify]: the delivery status notifications relayq
// queues itself and sends through the relay.

// bounces returns the messages the relay got from the null sender.
func bounces(relay *smtptest.Server) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range relay.Messages() {
		if m.From == "" {
			out = append(out, m)
		}
	}
	return out
}

// readReport reads a notice with go-message: it must be a
// multipart/report of report-type delivery-status; it returns the
// per-recipient fields of its message/delivery-status part, and its text
// for people (the text/plain part).
func readReport(t *testing.T, body []byte) (rcpts []textproto.MIMEHeader, text string) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("go-message cannot read the notice: %v\n%s", err, body)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %s %v (%v), want multipart/report; report-type=delivery-status", mt, params, err)
	}
	mr := e.MultipartReader()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(p.Body)
		switch ct, _, _ := p.Header.ContentType(); ct {
		case "text/plain":
			text = string(data)
			continue
		case "message/delivery-status":
		default:
			continue
		}
		for i, block := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
			if i == 0 || strings.TrimSpace(block) == "" {
				continue // the per-message fields
			}
			h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(block + "\n\n"))).ReadMIMEHeader()
			if err != nil {
				t.Fatalf("delivery-status block: %v\n%s", err, block)
			}
			rcpts = append(rcpts, h)
		}
	}
	if len(rcpts) == 0 {
		t.Fatalf("no message/delivery-status part with a recipient:\n%s", body)
	}
	return rcpts, text
}

// TestBounceToSender: SMTP on the unix socket → relayq → smtptest relay
// that refuses gone@example.net with 550 5.1.1. With [notify] bounce =
// "sender", the sender gets exactly one RFC 3464 notice through the same
// relay, from <>, which go-message reads as multipart/report with Status
// 5.1.1 and the relay's reply as Diagnostic-Code. A message from the null
// sender that dies the same way gets none; neither does a kill -9 and a
// restart produce a second one.
func TestBounceToSender(t *testing.T) {
	gone := "gone@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{gone: smtptest.Times(100, smtptest.Reply(550, "5.1.1 <gone@example.net>: Recipient address rejected: User unknown"))},
	}})
	d := startDaemon(t, relay, func(s settings) { s.set("notify", "bounce", `"sender"`) })

	nullID := d.submit(t, "", []string{gone}, newMessage(1, "", []string{gone}, 3))
	waitDead(t, d, nullID)
	from := "backup@example.org"
	id := d.submit(t, from, []string{gone}, newMessage(2, from, []string{gone}, 3))
	waitDead(t, d, id)
	waitFor(t, 20*time.Second, "the notice at the relay", func() bool { return len(bounces(relay)) > 0 })

	check := func() {
		t.Helper()
		got := bounces(relay)
		if len(got) != 1 {
			t.Fatalf("relay got %d messages from <>, want exactly 1 (none about the null-sender message)", len(got))
		}
		b := got[0]
		if len(b.To) != 1 || b.To[0] != from {
			t.Errorf("notice to %v, want %s", b.To, from)
		}
		rcpts, _ := readReport(t, b.Body)
		r := rcpts[0]
		if len(rcpts) != 1 || r.Get("Final-Recipient") != "rfc822; "+gone || r.Get("Action") != "failed" || r.Get("Status") != "5.1.1" {
			t.Errorf("recipient fields %v, want one failed 5.1.1 for %s", rcpts, gone)
		}
		if diag := r.Get("Diagnostic-Code"); diag != "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown" {
			t.Errorf("Diagnostic-Code %q", diag)
		}
		if !bytes.Contains(b.Body, []byte(id)) {
			t.Error("the notice does not name the queue ID")
		}
	}
	check()
	d.waitQueueEmpty(t, 10*time.Second)

	// A crash and a restart: the start-up sweep finds the notice recorded
	// and sends nothing. A fence message that bounces after the restart
	// shows the sweep has had its time.
	d.kill()
	d.start()
	fence := d.submit(t, "fence@example.org", []string{gone}, newMessage(3, "fence@example.org", []string{gone}, 3))
	waitDead(t, d, fence)
	waitFor(t, 20*time.Second, "the fence's notice", func() bool { return len(bounces(relay)) == 2 })
	d.waitQueueEmpty(t, 10*time.Second)
	for _, b := range bounces(relay) {
		if b.To[0] == from {
			continue
		}
		if b.To[0] != "fence@example.org" {
			t.Errorf("unexpected notice to %v", b.To)
		}
	}
	if n := len(bounces(relay)); n != 2 {
		t.Errorf("%d notices after the restart, want 2 (one each)", n)
	}
}

// TestDelayWarning: relay answers 451 to a recipient; after
// delay_warning_after the sender gets one "still trying" notice (Action:
// delayed), and no more at the next attempts.
func TestDelayWarning(t *testing.T) {
	slow := "slow@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{slow: smtptest.Times(1000, smtptest.Reply(451, "4.3.0 Mailbox busy, try later"))},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("notify", "bounce", `"sender"`)
		s.set("notify", "delay_warning_after", `"1s"`)
		s.set("retry", "initial_interval", `"200ms"`)
		s.set("retry", "max_interval", `"300ms"`)
	})
	from := "report@example.org"
	id := d.submit(t, from, []string{slow}, newMessage(4, from, []string{slow}, 3))
	waitFor(t, 20*time.Second, "the delay notice", func() bool { return len(bounces(relay)) > 0 })
	// A few more attempts go by.
	waitFor(t, 20*time.Second, "more attempts", func() bool { return len(d.deliveryLog(id)) >= 8 })
	got := bounces(relay)
	if len(got) != 1 {
		t.Fatalf("%d notices, want 1", len(got))
	}
	rcpts, _ := readReport(t, got[0].Body)
	r := rcpts[0]
	if r.Get("Action") != "delayed" || r.Get("Status") != "4.3.0" || r.Get("Final-Recipient") != "rfc822; "+slow {
		t.Errorf("recipient fields %v", r)
	}
}

// TestBounceStormIsCapped (catalogue B6): a script mails 8 bad addresses
// from one sender, and the relay refuses each with 550. With [notify]
// max_per_hour = 3, the sender gets 3 notices; the other 5 are withheld
// (one WARN in the log says so) while the 8 dead letters stay. A notice
// that the relay refuses in turn (its recipient is bad too) is
// dead-lettered without a notice about it: no storm of notices about
// notices.
func TestBounceStormIsCapped(t *testing.T) {
	refused := map[string][]smtptest.Step{}
	refuse := func(addr string) {
		refused[addr] = smtptest.Times(1000, smtptest.Reply(550, "5.1.1 <"+addr+">: Recipient address rejected: User unknown"))
	}
	var bad []string
	for i := range 8 {
		addr := "gone" + string(rune('a'+i)) + "@example.net"
		bad = append(bad, addr)
		refuse(addr)
	}
	refuse("nobody@example.net")
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Rcpt: refused}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("notify", "bounce", `"sender"`)
		s.set("notify", "max_per_hour", "3")
	})
	from := "script@example.org"
	for i, addr := range bad {
		id := d.submit(t, from, []string{addr}, newMessage(i, from, []string{addr}, 3))
		waitDead(t, d, id)
	}
	// Its notice goes to nobody@, which the relay refuses too.
	id := d.submit(t, "nobody@example.net", []string{bad[0]}, newMessage(100, "nobody@example.net", []string{bad[0]}, 3))
	waitDead(t, d, id)
	d.waitQueueEmpty(t, 30*time.Second)
	toSender := 0
	for _, b := range bounces(relay) {
		if len(b.To) == 1 && b.To[0] == from {
			toSender++
		}
	}
	if toSender != 3 {
		t.Errorf("the sender of 8 failed messages got %d notices, want 3", toSender)
	}
	// 8 + the message from nobody@ + its notice, refused, dead-lettered
	// without a notice of its own.
	if dead := d.deadList(t); len(dead) != 10 {
		t.Errorf("%d dead letters, want 10", len(dead))
	}
	if n := strings.Count(d.log.String(), "notice withheld"); n != 1 {
		t.Errorf("%d log lines about withheld notices at the default level, want 1:\n%s", n, d.log.String())
	}
}
