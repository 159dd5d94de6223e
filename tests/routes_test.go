package tests

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// End-to-end tests of several relays and routes ([[relays]], [[routes]]):
// failover, split messages, sender routes and each relay's breaker, each
// with two scripted relays.

// addRelay adds a [[relays]] entry with id for relay (url given).
func addRelay(s settings, order, id, url string, more ...string) {
	text := fmt.Sprintf("[[relays]]\nid = %q\nurl = %q\nconnection_timeout = \"5s\"\ngreeting_timeout = \"5s\"", id, url)
	for _, m := range more {
		text += "\n" + m
	}
	s.set(rawSection, "1-"+order, text)
}

// addRoute adds a [[routes]] entry, keys as TOML lines.
func addRoute(s settings, order string, lines ...string) {
	s.set(rawSection, "2-"+order, "[[routes]]\n"+strings.Join(lines, "\n"))
}

// shownMessage is the part of `relayq queue show --json` these tests read.
type shownMessage struct {
	Attempts   int `json:"attempts"`
	Recipients []struct {
		Address  string `json:"address"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
		Relay    string `json:"relay"`
	} `json:"recipients"`
	History []struct {
		Relay string `json:"relay"`
	} `json:"history"`
}

func (d *daemon) show(t *testing.T, id string) shownMessage {
	t.Helper()
	res := d.mustRelayq(t, "queue", "show", "--json", id)
	var out struct {
		Message *shownMessage `json:"message"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil || out.Message == nil {
		t.Fatalf("queue show --json %s: %v (%v)", id, res, err)
	}
	return *out.Message
}

// TestFailoverToBackupRelay: SMTP on the unix socket → relayq, whose
// route lists the relay "default" then "backup" (smtptest). The primary
// fails as a whole: it refuses the connection, answers 421 at the
// greeting, or refuses the login. The message is delivered by backup in
// the same attempt, and the delivery log and `queue status` name backup
// as the relay used.
func TestFailoverToBackupRelay(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary func(t *testing.T, s settings)
	}{
		{"connection refused", func(t *testing.T, s settings) {}}, // [relay] is 127.0.0.1:9
		{"421 at the greeting", func(t *testing.T, s settings) {
			p := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
				Greeting: smtptest.Times(1000, smtptest.Reply(421, "4.3.2 busy")),
			}})
			s.set("relay", "url", tomlString(relayURL(p, false)))
		}},
		{"login refused", func(t *testing.T, s settings) {
			p := smtptest.NewServer(t, smtptest.Options{Auth: map[string]string{"relayq": "right"}})
			s.set("relay", "url", tomlString(relayURL(p, false)))
			s.set("relay.auth", "user", `"relayq"`)
			s.set("relay.auth", "pass", `"wrong"`)
			s.set("relay.auth", "allow_insecure", "true")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backup := smtptest.NewServer(t, smtptest.Options{})
			d := startDaemon(t, nil, func(s settings) {
				tc.primary(t, s)
				addRelay(s, "a", "backup", relayURL(backup, false))
				addRoute(s, "a", `relays = ["default", "backup"]`)
			})
			from, to := "cron@example.org", []string{"ops@example.net"}
			id := d.submit(t, from, to, newMessage(1, from, to, 3))
			got := backup.WaitMessages(t, 1, 30*time.Second)
			if got[0].From != from || !slices.Equal(got[0].To, to) {
				t.Errorf("backup received %s → %v", got[0].From, got[0].To)
			}
			d.waitQueueEmpty(t, 15*time.Second)
			st := d.messageStatus(t, id)
			if st.State != "delivered" || len(st.Recipients) != 1 || !strings.HasPrefix(st.Recipients[0].Relay, "backup (") {
				t.Errorf("queue status: %+v, want delivered by backup", st)
			}
			var sent []map[string]string
			for _, rec := range d.deliveryLog(id) {
				if rec["status"] == "sent" {
					sent = append(sent, rec)
				}
			}
			if len(sent) != 1 || !strings.HasPrefix(sent[0]["relay"], "backup (") || sent[0]["attempt"] != "1" {
				t.Errorf("delivery log %v, want one sent line naming backup, first attempt", d.deliveryLog(id))
			}
		})
	}
}

// TestRoutesSplitAndSender: SMTP on the unix socket → relayq with two
// smtptest relays: A ([relay], "default") and B ([[relays]] "b"). Routes:
// the billing application's sender goes to B; recipients in example.org
// go to B; everything else to A. A message to one recipient of each kind
// is sent in two parts, each to its relay, and `queue status` reports it
// whole, each recipient with its relay; a billing message goes to B only.
func TestRoutesSplitAndSender(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, func(s settings) {
		addRelay(s, "a", "b", relayURL(b, false))
		addRoute(s, "a", `name = "billing"`, `sender = "*@billing.example.com"`, `relays = ["b"]`)
		addRoute(s, "b", `name = "org"`, `recipient_domain = "example.org"`, `relays = ["b"]`)
	})
	from, to := "app@example.com", []string{"x@example.net", "y@example.org"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))
	gotA := a.WaitMessages(t, 1, 30*time.Second)
	gotB := b.WaitMessages(t, 1, 30*time.Second)
	if !slices.Equal(gotA[0].To, []string{"x@example.net"}) || !slices.Equal(gotB[0].To, []string{"y@example.org"}) {
		t.Errorf("A got %v, B got %v; want the part for example.net on A, example.org on B", gotA[0].To, gotB[0].To)
	}
	d.waitQueueEmpty(t, 15*time.Second)
	st := d.messageStatus(t, id)
	relays := map[string]string{}
	for _, r := range st.Recipients {
		if r.Status != "delivered" {
			t.Errorf("recipient %s: %s", r.Address, r.Status)
		}
		relays[r.Address] = r.Relay
	}
	if st.State != "delivered" || len(st.Recipients) != 2 ||
		!strings.HasPrefix(relays["x@example.net"], "default (") || !strings.HasPrefix(relays["y@example.org"], "b (") {
		t.Errorf("queue status %+v, want one delivered message, each recipient with its relay", st)
	}

	billing := "invoices@billing.example.com"
	d.submit(t, billing, []string{"customer@example.net"}, newMessage(2, billing, []string{"customer@example.net"}, 3))
	gotB = b.WaitMessages(t, 2, 30*time.Second)
	if gotB[1].From != billing || !slices.Equal(gotB[1].To, []string{"customer@example.net"}) {
		t.Errorf("B's second message: %s → %v, want the billing message", gotB[1].From, gotB[1].To)
	}
	d.waitQueueEmpty(t, 15*time.Second)
	if n := len(a.Messages()); n != 1 {
		t.Errorf("A received %d messages, want 1 (billing mail goes to B)", n)
	}
}

// TestRelayBreakerHoldsAndReleases: SMTP on the unix socket → relayq →
// relay "b" (smtptest answering 421 at the greeting) for example.org, and
// "default" for the rest. While b is down, its new messages wait without
// attempts (queue show --json: attempts 0) and the other relay's mail
// still goes out; once b greets again, the next probe gets through and
// every waiting message, the deferred ones too (whose backoff is a
// minute), is delivered at once.
func TestRelayBreakerHoldsAndReleases(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(100000, smtptest.Reply(421, "4.3.2 down for maintenance")),
	}})
	d := startDaemon(t, a, func(s settings) {
		s.set("retry", "initial_interval", `"1m"`)
		s.set("retry", "max_interval", `"1m"`)
		addRelay(s, "a", "b", relayURL(b, false))
		addRoute(s, "a", `recipient_domain = "example.org"`, `relays = ["b"]`)
	})
	from := "app@example.com"
	var early []string
	// Each early message probes b once (and is deferred for a minute):
	// four failures in a row make the pause 1s, 2s, 4s, then 8s, long
	// enough to look at the messages that wait.
	for i := range 4 {
		to := []string{fmt.Sprintf("early%d@example.org", i)}
		early = append(early, d.submit(t, from, to, newMessage(i, from, to, 3)))
	}
	waitFor(t, 30*time.Second, "relay b paused after 4 failures", func() bool {
		for _, r := range d.relayStatuses(t) {
			if r.ID == "b" && strings.HasPrefix(r.Relay, "b (") {
				return r.State == "paused" && r.Failures >= 4
			}
		}
		return false
	})
	var waiting []string
	for i := range 2 {
		to := []string{fmt.Sprintf("late%d@example.org", i)}
		waiting = append(waiting, d.submit(t, from, to, newMessage(10+i, from, to, 3)))
	}
	other := []string{"z@example.net"}
	d.submit(t, from, other, newMessage(20, from, other, 3))
	a.WaitMessages(t, 1, 30*time.Second) // the other relay is not held up
	for _, id := range waiting {
		waitFor(t, 10*time.Second, "message "+id+" to wait for relay b", func() bool {
			m := d.show(t, id)
			return len(m.Recipients) == 1 && strings.HasPrefix(m.Recipients[0].Relay, "b (")
		})
		if m := d.show(t, id); m.Attempts != 0 || m.Recipients[0].Attempts != 0 || len(m.History) != 0 {
			t.Errorf("message %s while relay b is down: %+v, want no attempt", id, m)
		}
	}
	b.SetScript(smtptest.Script{})
	got := b.WaitMessages(t, 6, 40*time.Second) // the deferred ones' backoff is 48s or more
	if len(got) != 6 {
		t.Fatalf("b received %d messages", len(got))
	}
	d.waitQueueEmpty(t, 15*time.Second)
	for _, id := range waiting {
		if st := d.messageStatus(t, id); st.State != "delivered" {
			t.Errorf("message %s: %+v", id, st)
		}
	}
}

// relayStatuses runs `relayq status --json` and returns every relay.
func (d *daemon) relayStatuses(t *testing.T) []statusRelay {
	t.Helper()
	res := d.relayq("status", "--json")
	var st struct {
		Relays []statusRelay `json:"relays"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status --json: %v (%v)", res, err)
	}
	return st.Relays
}

// TestVerifyEveryRelay: relayq verify → two relays, [relay] (smtptest,
// ready) and [[relays]] "down" (connection refused). verify checks both
// and exits 69 for the one that cannot be reached, naming it; with
// --relay default it checks only the ready one and exits 0; an unknown
// id is a usage error.
func TestVerifyEveryRelay(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	d := newDaemon(t, a, func(s settings) {
		addRelay(s, "a", "down", "smtp://127.0.0.1:9")
	})
	all := d.verify(t)
	if all.code != 69 || !strings.Contains(all.stdout, "default (smtp://"+a.Addr()+")") ||
		!strings.Contains(all.stderr, "down (smtp://127.0.0.1:9): not ready") {
		t.Errorf("verify: exit %d, want 69 with both relays reported and the unreachable one named", all.code)
	}
	if one := d.verify(t, "--relay", "default"); one.code != 0 || strings.Contains(one.stdout+one.stderr, "127.0.0.1:9") {
		t.Errorf("verify --relay default: exit %d, want 0 and only that relay", one.code)
	}
	if bad := d.verify(t, "--relay", "nope"); bad.code != 64 || !strings.Contains(bad.stderr, `no relay has id "nope"`) {
		t.Errorf("verify --relay nope: exit %d, want 64", bad.code)
	}
}

// TestReloadRoutesApplyToQueuedMail: SMTP on the unix socket → relayq,
// whose only route for example.org is relay A (421 at every greeting, so
// the message is deferred for a minute). `relayq reload` of a file that
// routes example.org to relay B instead sends the queued message to B at
// once: routes are read at each attempt, and a reload ends the waits.
func TestReloadRoutesApplyToQueuedMail(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(100000, smtptest.Reply(421, "4.3.2 down")),
	}})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, func(s settings) {
		s.set("retry", "initial_interval", `"1m"`)
		s.set("retry", "max_interval", `"1m"`)
		addRelay(s, "a", "b", relayURL(b, false))
	})
	from, to := "app@example.com", []string{"y@example.org"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))
	waitFor(t, 15*time.Second, "the first attempt to fail", func() bool {
		m := d.show(t, id)
		return m.Attempts == 1
	})
	addRoute(d.settings, "a", `recipient_domain = "example.org"`, `relays = ["b"]`)
	d.writeConfig()
	if res := runCmd(relayqBin, nil, "reload", "-c", d.config); res.code != 0 {
		t.Fatalf("relayq reload: %v", res)
	}
	got := b.WaitMessages(t, 1, 30*time.Second) // the backoff is 48s or more
	if !slices.Equal(got[0].To, to) {
		t.Errorf("B received %v", got[0].To)
	}
	d.waitQueueEmpty(t, 15*time.Second)
}
