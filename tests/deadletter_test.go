package tests

import (
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// countRcpt counts the RCPT commands the relay received for addr.
func countRcpt(relay *smtptest.Server, addr string) int {
	n := 0
	for _, c := range relay.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), "RCPT TO:") && strings.Contains(strings.ToLower(c), "<"+strings.ToLower(addr)+">") {
			n++
		}
	}
	return n
}

// findDead returns the dead letter with queue ID id.
func findDead(dead []listed, id string) (listed, bool) {
	for _, l := range dead {
		if l.ID == id {
			return l, true
		}
	}
	return listed{}, false
}

// TestPermanentFailureOneRecipient: SMTP on the unix socket → relayq →
// smtptest relay that answers RCPT with 550 5.1.1 for one of three
// recipients. That recipient is in `relayq dead list --json` with the
// relay's reply and was tried once; the other two were delivered once.
func TestPermanentFailureOneRecipient(t *testing.T) {
	bad := "nobody@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{bad: {smtptest.Reply(550, "5.1.1 <nobody@example.net>: no such user")}},
	}})
	d := startDaemon(t, relay)
	from := "dead@example.org"
	to := []string{"alice@example.net", bad, "carol@example.com"}
	body := newMessage(4, from, to, 5)
	id := d.submit(t, from, to, body)

	got := relay.WaitMessages(t, 1, 20*time.Second)
	if !sameMessage(got[0].Body, body) {
		t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
	}
	if want := []string{"alice@example.net", "carol@example.com"}; !slices.Equal(got[0].To, want) {
		t.Errorf("delivered to %q, want %q", got[0].To, want)
	}

	// Nothing left queued means nothing will be retried.
	d.waitQueueEmpty(t, 10*time.Second)
	dl, ok := findDead(d.deadList(t), id)
	if !ok {
		t.Fatalf("message %s not in dead list", id)
	}
	if len(dl.Recipients) != 1 {
		t.Fatalf("dead letter recipients %+v, want only %s", dl.Recipients, bad)
	}
	r := dl.Recipients[0]
	if r.Address != bad || r.Status != "dead" || r.ReplyCode != 550 || r.Enhanced != "5.1.1" ||
		!strings.HasPrefix(r.LastReply, "550") || !strings.Contains(r.LastReply, "no such user") {
		t.Errorf("dead recipient %+v, want %s dead with the relay's 550 5.1.1 no such user", r, bad)
	}
	if dl.From != from || dl.Died == nil || dl.Died.Before(dl.Created) {
		t.Errorf("dead letter %+v: want from %s and a time of death", dl, from)
	}
	if n := countRcpt(relay, bad); n != 1 {
		t.Errorf("relay was asked %d times for %s, want once", n, bad)
	}
	for _, a := range []string{"alice@example.net", "carol@example.com"} {
		if n := countRcpt(relay, a); n != 1 {
			t.Errorf("relay was asked %d times for %s, want once", n, a)
		}
	}
	if n := len(relay.Messages()); n != 1 {
		t.Errorf("relay accepted %d transactions, want 1", n)
	}
	waitFor(t, 5*time.Second, "three delivery log lines", func() bool { return len(d.deliveryLog(id)) >= 3 })
	var dead []map[string]string
	for _, l := range d.deliveryLog(id) {
		if l["status"] == "dead" {
			dead = append(dead, l)
		}
	}
	if len(dead) != 1 || dead[0]["rcpt"] != bad || !strings.Contains(dead[0]["reply"], "550") {
		t.Errorf("dead log lines %v, want one for %s with the 550 reply", dead, bad)
	}
}

// TestLMTPPerRecipientReplies: SMTP on the unix socket → relayq → smtptest
// relay speaking LMTP, which after the dot answers 250 for one recipient,
// 550 for the second and 452 for the third. The first is delivered, the
// second dead-lettered, the third retried alone and delivered.
func TestLMTPPerRecipientReplies(t *testing.T) {
	ok, dead, later := "ok@example.net", "gone@example.net", "full@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{LMTP: true, Script: smtptest.Script{
		LMTP: map[string][]smtptest.Step{
			dead:  {smtptest.Reply(550, "5.1.1 <gone@example.net> mailbox unknown")},
			later: {smtptest.Reply(452, "4.2.2 <full@example.net> mailbox full")},
		},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("relay", "url", tomlString(relayURL(relay, true)))
	})
	from := "lmtp@example.org"
	body := newMessage(5, from, []string{ok, dead, later}, 5)
	id := d.submit(t, from, []string{ok, dead, later}, body)

	got := relay.WaitMessages(t, 2, 20*time.Second)
	if !slices.Equal(got[0].To, []string{ok}) || !slices.Equal(got[1].To, []string{later}) {
		t.Errorf("deliveries to %q then %q, want [%s] then [%s]", got[0].To, got[1].To, ok, later)
	}
	for _, g := range got {
		if !sameMessage(g.Body, body) {
			t.Errorf("body differs:\n got %q\nwant %q", g.Body, body)
		}
	}
	d.waitQueueEmpty(t, 10*time.Second)
	dl, found := findDead(d.deadList(t), id)
	if !found || len(dl.Recipients) != 1 || dl.Recipients[0].Address != dead ||
		dl.Recipients[0].ReplyCode != 550 || !strings.Contains(dl.Recipients[0].LastReply, "mailbox unknown") {
		t.Errorf("dead letter %+v (found %v), want only %s with the 550 mailbox unknown reply", dl, found, dead)
	}
	waitFor(t, 5*time.Second, "four delivery log lines", func() bool { return len(d.deliveryLog(id)) >= 4 })
	statuses := map[string][]string{}
	for _, l := range d.deliveryLog(id) {
		statuses[l["rcpt"]] = append(statuses[l["rcpt"]], l["status"])
	}
	want := map[string][]string{ok: {"sent"}, dead: {"dead"}, later: {"deferred", "sent"}}
	for rcpt, w := range want {
		if !slices.Equal(statuses[rcpt], w) {
			t.Errorf("log statuses for %s: %v, want %v", rcpt, statuses[rcpt], w)
		}
	}
	if n := countRcpt(relay, ok); n != 1 {
		t.Errorf("relay was asked %d times for %s, want once", n, ok)
	}
}
