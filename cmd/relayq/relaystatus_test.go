package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"relayq/control"
	"relayq/delivery"
	"relayq/queue"
)

// TestStatusShowsRelays: status prints each relay's state and last result
// in the table, and --json has them; a paused relay says until when and
// after how many failures.
func TestStatusShowsRelays(t *testing.T) {
	now := time.Now()
	until, last := now.Add(30*time.Second), now.Add(-2*time.Second)
	st := &control.Status{Started: now.Add(-time.Hour), Now: now, Relays: []control.RelayStatus{
		relayStatus(delivery.RelayStatus{Relay: "smtp://mail.example.net:587", State: delivery.RelayPaused, PausedUntil: until, Failures: 3,
			LastAttempt: last, LastReply: &queue.Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{"down for maintenance"}, Stage: "greeting"}}),
		relayStatus(delivery.RelayStatus{Relay: "lmtp+unix:///run/dovecot/lmtp", State: delivery.RelayOK}),
	}}
	var out bytes.Buffer
	printStatus(cmdEnv{Stdout: &out}, st, "/var/lib/relayq/queue.db", nil)
	for _, want := range []string{
		"Relay:        smtp://mail.example.net:587: paused until " + until.Local().Format(time.DateTime) + " (in 30s) after 3 failure(s)\n",
		"Last result:  " + last.Local().Format(time.DateTime) + " (2s ago): 421 4.3.2 down for maintenance (in reply to greeting)\n",
		"Relay:        lmtp+unix:///run/dovecot/lmtp: ok\nLast result:  no attempt yet\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	raw, err := json.Marshal(statusJSON(st, "queue.db", nil))
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Relays []struct {
			Relay       string     `json:"relay"`
			State       string     `json:"state"`
			PausedUntil *time.Time `json:"paused_until"`
			Failures    int        `json:"failures"`
			LastReply   *struct {
				Code     int    `json:"code"`
				Enhanced string `json:"enhanced"`
			} `json:"last_reply"`
		} `json:"relays"`
	}
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if r := back.Relays; len(r) != 2 || r[0].State != "paused" || r[0].Failures != 3 || r[0].PausedUntil == nil ||
		r[0].LastReply == nil || r[0].LastReply.Code != 421 || r[0].LastReply.Enhanced != "4.3.2" || r[1].State != "ok" || r[1].LastReply != nil {
		t.Errorf("status --json relays: %s", raw)
	}
	if raw, _ := json.Marshal(statusJSON(&control.Status{Now: now}, "queue.db", nil)); !strings.Contains(string(raw), `"relays":[]`) {
		t.Errorf("status --json without relays: %s, want an empty list", raw)
	}
}

// TestShowPrintsTranscript: queue show prints the last attempt's
// transcript under its heading, indented and with control characters
// defused; --json has it in the history.
func TestShowPrintsTranscript(t *testing.T) {
	s := newOpsSetup(t, "")
	id := s.put(t, "x@y.org")
	ls, err := s.q.Lease(1)
	if err != nil || len(ls) != 1 {
		t.Fatal(ls, err)
	}
	transcript := "* connected to 192.0.2.1:25\nC: MAIL FROM:<a@x.org>\nS: 451 4.3.0 \x1b[2Jtry later"
	if _, err := s.q.RecordAttempt(ls[0], queue.Attempt{Relay: "smtp://relay:25", Transcript: transcript}, []queue.Outcome{
		{Address: "x@y.org", Result: queue.Deferred, Reply: &queue.Reply{Code: 451}, NextAttempt: time.Now().Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := s.relayq("queue", "show", id)
	if code != exitOK {
		t.Fatalf("queue show: %d %s", code, errOut)
	}
	_, tail, found := strings.Cut(out, "\nTranscript of the last attempt (")
	want := "  * connected to 192.0.2.1:25\n  C: MAIL FROM:<a@x.org>\n  S: 451 4.3.0 \uFFFD[2Jtry later\n"
	if !found || !strings.Contains(tail, want) || strings.Contains(out, "\x1b") {
		t.Errorf("queue show:\n%s\nwant the transcript heading, then\n%s", out, want)
	}
	code, out, _ = s.relayq("queue", "show", "--json", id)
	var shown struct{ Message queue.Message }
	if err := json.Unmarshal([]byte(out), &shown); code != exitOK || err != nil || len(shown.Message.History) != 1 ||
		shown.Message.History[0].Transcript != transcript {
		t.Errorf("queue show --json: %d %v\n%s", code, err, out)
	}
}
