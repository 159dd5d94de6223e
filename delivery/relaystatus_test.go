package delivery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport"
	"relayq/transport/smtptest"
)

// TestRelayStatusFollowsTheRelay: a relay that answers 421 at the greeting
// shows as paused, with the failures counted and the 421 as the last
// result; once it accepts again, ok, no failures, and the 250 after the
// dot as the last result.
func TestRelayStatusFollowsTheRelay(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(1000, smtptest.Reply(421, "4.3.2 down for maintenance")),
	}}, RetryPolicy{InitialInterval: 300 * time.Millisecond, MaxInterval: time.Second, MaxLifetime: time.Hour}, 0)
	if st := r.d.RelayStatus(); st.State != RelayOK || st.LastReply != nil || st.Relay != "test" {
		t.Fatalf("before any attempt: %+v, want ok with no last result", st)
	}
	r.put(t, "x\r\n", "a@there.example")
	var st RelayStatus
	waitFor(t, "the relay to show as paused", func() bool {
		st = r.d.RelayStatus()
		return st.State == RelayPaused
	})
	if st.Failures < 1 || !st.PausedUntil.After(st.LastAttempt) || st.LastReply == nil ||
		st.LastReply.Code != 421 || st.LastReply.Enhanced != "4.3.2" || st.LastReply.Stage != "greeting" ||
		!strings.Contains(st.LastReply.String(), "down for maintenance") {
		t.Fatalf("paused relay: %+v, reply %v; want the 421 at the greeting and a pause after it", st, st.LastReply)
	}

	r.relay.SetScript(smtptest.Script{})
	r.relay.WaitMessages(t, 1, 10*time.Second)
	waitFor(t, "the relay to show as ok", func() bool {
		st = r.d.RelayStatus()
		return st.State == RelayOK && st.LastReply != nil && st.LastReply.Code == 250
	})
	if st.Failures != 0 || !strings.Contains(st.LastReply.String(), "queued as") {
		t.Fatalf("relay back: %+v, reply %v; want no failures and the 250 after the dot", st, st.LastReply)
	}
}

// TestRelayStatusStates: paused while the pause lasts, probing once it is
// over and until an attempt gets through, then ok.
func TestRelayStatusStates(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := New(Options{Relay: "smtp://relay:25", Now: func() time.Time { return now }})
	refused := &transport.Error{Stage: transport.StageDial, Err: errors.New("connection refused")}
	d.noteRelay(DefaultRelay, "test", false, nil, refused)
	st := d.RelayStatus()
	if st.State != RelayPaused || st.Failures != 1 || !st.PausedUntil.After(now) || !st.LastAttempt.Equal(now) ||
		st.LastReply.Code != 0 || !strings.Contains(st.LastReply.String(), "connection refused") {
		t.Fatalf("after a refused connection: %+v (%v)", st, st.LastReply)
	}
	now = st.PausedUntil
	d.noteRelay(DefaultRelay, "test", true, nil, refused) // the probe
	if st = d.RelayStatus(); st.State != RelayPaused || st.Failures != 2 {
		t.Fatalf("after a second failure: %+v, want paused after 2 failures", st)
	}
	now = st.PausedUntil.Add(time.Millisecond)
	if st = d.RelayStatus(); st.State != RelayProbing {
		t.Fatalf("after the pause: %+v, want probing", st)
	}
	d.noteRelay(DefaultRelay, "test", true, &transport.Result{Recipients: []transport.RecipientResult{{Address: "a@x", Reply: "2.0.0 Ok: queued as 42"}}}, nil)
	if st = d.RelayStatus(); st.State != RelayOK || st.Failures != 0 || st.LastReply.Code != 250 || st.LastReply.Enhanced != "2.0.0" {
		t.Fatalf("after a success: %+v (%v), want ok with the 250", st, st.LastReply)
	}
}

// TestResultReply: what the relay said to an attempt as a whole.
func TestResultReply(t *testing.T) {
	rcptRefused := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	local := &transport.LocalError{Reply: &smtp.SMTPError{Code: 553, Message: "bad address"}}
	tests := []struct {
		name string
		res  *transport.Result
		err  error
		want string // Reply.String(); "" for nil
	}{
		{"transaction failed", nil, &transport.Error{Stage: transport.StageMail, Err: &smtp.SMTPError{Code: 451, Message: "later"}}, "451 later (in reply to mail)"},
		{"one accepted", &transport.Result{Recipients: []transport.RecipientResult{
			{Address: "gone@x", Err: rcptRefused}, {Address: "ok@x", Reply: "2.0.0 Ok"},
		}}, nil, "250 2.0.0 Ok"},
		{"all refused", &transport.Result{Recipients: []transport.RecipientResult{
			{Address: "bad@x", Err: local}, {Address: "gone@x", Err: rcptRefused},
		}}, nil, "550 5.1.1 no such user"},
		{"none sent", &transport.Result{Recipients: []transport.RecipientResult{{Address: "bad@x", Err: local}}}, nil, ""},
	}
	for _, tt := range tests {
		if got := resultReply(tt.res, tt.err).String(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestAttemptKeepsTranscript: the history entry of an attempt holds the
// relay exchange the transport reported; a dead letter keeps it.
func TestAttemptKeepsTranscript(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{smtptest.Reply(554, "5.7.1 rejected by policy")},
	}}, RetryPolicy{}, 0)
	id := r.put(t, "x\r\n", "a@there.example")
	waitFor(t, "the dead letter", func() bool {
		c, _ := r.q.Count()
		return c.Dead == 1 && c.Messages == 0
	})
	d, err := r.q.GetDead(id)
	if err != nil {
		t.Fatal(err)
	}
	h := d.Record.History
	got := h[len(h)-1].Transcript
	for _, want := range []string{"* connected to " + r.relay.Addr(), "C: MAIL FROM:<cron@here.example>", "C: RCPT TO:<a@there.example>",
		"C: <message body: 3 bytes>", "C: .", "S: 554 5.7.1 rejected by policy"} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q:\n%s", want, got)
		}
	}
}
