package delivery

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/queue"
	"relayq/transport/smtptest"
)

// TestDSNCarriedThroughRetries: the submission's RET/ENVID and each
// recipient's NOTIFY/ORCPT reach the relay, and on the retry of the one
// recipient deferred the first time, its own parameters (not another's)
// go with it.
func TestDSNCarriedThroughRetries(t *testing.T) {
	r := start(t, smtptest.Options{DSN: true, Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"b@there.example": {smtptest.Reply(451, "4.2.0 later")}},
	}}, RetryPolicy{}, 0)
	env := queue.Envelope{
		From:       "cron@here.example",
		Recipients: []string{"a@there.example", "b@there.example"},
		DSN:        queue.DSN{Return: "FULL", EnvelopeID: "E1"},
		RecipientDSN: []queue.RecipientDSN{
			{Notify: []string{"NEVER"}},
			{Notify: []string{"DELAY", "FAILURE"}, OrigType: "RFC822", Orig: "b-alias@there.example"},
		},
	}
	if _, err := r.q.Put(context.Background(), env, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	got := r.relay.WaitMessages(t, 2, 10*time.Second)
	r.emptied(t)
	for _, m := range got {
		if !slices.Contains(m.MailParams, "RET=FULL") || !slices.Contains(m.MailParams, "ENVID=E1") {
			t.Errorf("MAIL parameters %q, want RET=FULL and ENVID=E1", m.MailParams)
		}
	}
	if p := got[0].RcptParams["a@there.example"]; !slices.Equal(p, []string{"NOTIFY=NEVER"}) {
		t.Errorf("first attempt, a: %q", p)
	}
	want := []string{"NOTIFY=DELAY,FAILURE", "ORCPT=RFC822;b-alias@there.example"}
	if p := got[1].RcptParams["b@there.example"]; !slices.Equal(got[1].To, []string{"b@there.example"}) || !slices.Equal(p, want) {
		t.Errorf("retry to %v with %q, want b alone with %q", got[1].To, p, want)
	}
}

// TestRelayCannotTakeMessageDeadLettersAtOnce: a message over the relay's
// SIZE, or 8-bit for a relay without 8BITMIME, goes to the dead letters at
// the first attempt with the reason, and nothing is sent.
func TestRelayCannotTakeMessageDeadLettersAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, body, reason string
		relay              smtptest.Options
	}{
		{"SIZE", strings.Repeat("x", 98) + "\r\n", "message size 100 exceeds the relay's SIZE limit 50", smtptest.Options{MaxSize: 50}},
		{"8BITMIME", "caf\xc3\xa9\r\n", "the relay does not offer 8BITMIME", smtptest.Options{Without: []string{"8BITMIME"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, tc.relay, RetryPolicy{}, 0)
			env := queue.Envelope{From: "cron@here.example", Recipients: []string{"a@there.example"}, EightBit: tc.name == "8BITMIME"}
			if _, err := r.q.Put(context.Background(), env, []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			r.emptied(t)
			dead, _ := r.q.ListDead()
			if len(dead) != 1 || dead[0].Attempts != 1 {
				t.Fatalf("dead letters %+v, want 1 after 1 attempt", dead)
			}
			if reply := dead[0].Recipients[0].LastReply.String(); !strings.Contains(reply, tc.reason) {
				t.Errorf("reason %q, want it to say %q", reply, tc.reason)
			}
			if n := len(r.relay.MailTimes()); n != 0 {
				t.Errorf("%d MAIL commands for a message the relay cannot take", n)
			}
		})
	}
}
