package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// statusRelay is one relay in `relayq status --json`.
type statusRelay struct {
	Relay       string     `json:"relay"`
	ID          string     `json:"id"`
	State       string     `json:"state"`
	PausedUntil *time.Time `json:"paused_until"`
	Failures    int        `json:"failures"`
	LastAttempt *time.Time `json:"last_attempt"`
	LastReply   *struct {
		Code     int      `json:"code"`
		Enhanced string   `json:"enhanced"`
		Lines    []string `json:"lines"`
	} `json:"last_reply"`
}

// relayStatus runs `relayq status --json` and returns its one relay.
func (d *daemon) relayStatus(t *testing.T) statusRelay {
	t.Helper()
	res := d.relayq("status", "--json")
	var st struct {
		Relays []statusRelay `json:"relays"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || len(st.Relays) != 1 {
		t.Fatalf("status --json: %v (%v), want one relay", res, err)
	}
	return st.Relays[0]
}

// TestStatusShowsRelayState: SMTP on the unix socket → relayq → smtptest
// relay that answers 421 at the greeting. `relayq status` shows the relay
// paused (until when, after how many failures) with the 421 as its last
// result, in the table and in --json, and `queue show` prints the
// transcript of the failed attempt. Once the relay accepts again and the
// message is delivered, status shows it ok with the 250 after the dot.
func TestStatusShowsRelayState(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(1000, smtptest.Reply(421, "4.3.2 down for maintenance")),
	}})
	d := startDaemon(t, relay, func(s settings) {
		// A relay pause of 1s, then 2s: long enough to be seen.
		s.set("retry", "initial_interval", `"2s"`)
		s.set("retry", "max_interval", `"2s"`)
	})
	if r := d.relayStatus(t); r.State != "ok" || r.LastReply != nil || r.Relay != relayURL(relay, false) {
		t.Fatalf("relay before any attempt: %+v, want ok, no last result, named %s", r, relayURL(relay, false))
	}
	from, to := "status@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))

	var r statusRelay
	waitFor(t, 15*time.Second, "status to show the relay paused after its 421", func() bool {
		r = d.relayStatus(t)
		return r.State == "paused" && r.LastReply != nil && r.LastReply.Code == 421
	})
	if r.Failures < 1 || r.PausedUntil == nil || r.LastAttempt == nil || r.LastReply.Enhanced != "4.3.2" ||
		strings.Join(r.LastReply.Lines, " ") != "down for maintenance" {
		t.Errorf("paused relay in status --json: %+v (%+v)", r, r.LastReply)
	}
	var table cmdResult
	waitFor(t, 15*time.Second, "the status table to show the pause", func() bool {
		table = d.relayq("status")
		return strings.Contains(table.stdout, "paused until")
	})
	if !strings.Contains(table.stdout, "Relay:        "+relayURL(relay, false)+": paused until ") ||
		!strings.Contains(table.stdout, "failure(s)") ||
		!strings.Contains(table.stdout, "421 4.3.2 down for maintenance (in reply to greeting)") {
		t.Errorf("status table:\n%s\nwant the relay paused with the 421", table.stdout)
	}
	show := d.mustRelayq(t, "queue", "show", id)
	_, transcript, found := strings.Cut(show.stdout, "Transcript of the last attempt")
	if !found || !strings.Contains(transcript, "  * connected to "+relay.Addr()) ||
		!strings.Contains(transcript, "  S: 421 4.3.2 down for maintenance") {
		t.Errorf("queue show:\n%s\nwant the transcript with the 421 greeting", show.stdout)
	}

	relay.SetScript(smtptest.Script{})
	relay.WaitMessages(t, 1, 20*time.Second)
	waitFor(t, 15*time.Second, "status to show the relay ok after the delivery", func() bool {
		r = d.relayStatus(t)
		return r.State == "ok" && r.LastReply != nil && r.LastReply.Code == 250
	})
	if r.Failures != 0 || r.PausedUntil != nil || !strings.Contains(strings.Join(r.LastReply.Lines, " "), "queued as") {
		t.Errorf("relay back in status --json: %+v (%+v), want no failures and the relay's queue ID", r, r.LastReply)
	}
	table = d.relayq("status")
	if !strings.Contains(table.stdout, "Relay:        "+relayURL(relay, false)+": ok\n") ||
		!strings.Contains(table.stdout, ": 250 2.0.0 Ok: queued as") {
		t.Errorf("status table:\n%s\nwant the relay ok with the 250", table.stdout)
	}
}

// TestFlushEndsRelayPause: SMTP on the unix socket → relayq → smtptest
// relay that answers 421 at the greeting until the relay's pause has
// grown past 5 s; then the relay accepts again and `relayq flush` sends
// the queue at once (within 2 s), instead of leaving the relay idle
// until its pause is over.
func TestFlushEndsRelayPause(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(1000, smtptest.Reply(421, "4.3.2 down for maintenance")),
	}})
	d := startDaemon(t, relay, func(s settings) {
		// The pause doubles from 1 s to initial_interval: 1, 2, 4, 8 s …
		s.set("retry", "initial_interval", `"60s"`)
		s.set("retry", "max_interval", `"60s"`)
	})
	from, to := "flush@example.org", []string{"rcpt@example.net"}
	// Each failed probe defers its message for a minute: four messages
	// make four probes, and pauses of 1, 2, 4 and then 8 s.
	for i := range 4 {
		d.submit(t, from, to, newMessage(i, from, to, 3))
	}
	waitFor(t, 40*time.Second, "the relay's pause to last more than 5s", func() bool {
		r := d.relayStatus(t)
		return r.State == "paused" && r.PausedUntil != nil && time.Until(*r.PausedUntil) > 5*time.Second
	})
	relay.SetScript(smtptest.Script{})
	flushed := time.Now()
	d.mustRelayq(t, "flush")
	relay.WaitMessages(t, 4, 10*time.Second)
	if took := time.Since(flushed); took > 2*time.Second {
		t.Errorf("delivered %s after the flush; want at once, not after the relay's pause", took)
	}
}
