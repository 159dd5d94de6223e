package transport

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// malformedDotReplies are replies to the final dot that say nothing valid
// about the message: not a code at all, a code out of range, or a code no
// relay may give there.
var malformedDotReplies = []string{
	"999 foo\r\n", "abc\r\n", "600 5.0.0 no\r\n", "199 hm\r\n", "354 go on\r\n",
	"251 2.0.0 ok\r\n", "570 5.0.0 second digit\r\n", "25O ok\r\n",
}

// TestMalformedDotReply: every reply to the final dot that is not a valid
// final reply leaves the outcome unknown (AfterDot, like no reply at all),
// for SMTP and for each LMTP recipient; a valid refusal stays a refusal.
func TestMalformedDotReply(t *testing.T) {
	for _, raw := range malformedDotReplies {
		t.Run("SMTP "+strings.TrimSpace(raw), func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{{Raw: raw}}}})
			_, err := send(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
			if te := wantError(t, err, StageDot, true); !te.AfterDot {
				t.Errorf("err = %v: not AfterDot, so a retry would not be marked as a possible duplicate", err)
			}
		})
		t.Run("LMTP "+strings.TrimSpace(raw), func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{LMTP: true, Script: smtptest.Script{
				LMTP: map[string][]smtptest.Step{"odd@example.net": {{Raw: raw}}},
			}})
			res, err := send(t, newTransport(t, srv, lmtp), message("s@example.org", "odd@example.net", "r@example.net"))
			if err != nil { // garbage go-smtp cannot read past: the transaction's outcome is unknown
				if te := wantError(t, err, StageDot, true); !te.AfterDot {
					t.Errorf("err = %v, want AfterDot", err)
				}
				return
			}
			var te *Error
			if !errors.As(res.Recipients[0].Err, &te) || !te.AfterDot {
				t.Errorf("recipient with reply %q: err = %v, want AfterDot", raw, res.Recipients[0].Err)
			}
		})
	}
	for _, code := range []int{550, 451, 554} {
		srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{smtptest.Reply(code, "5.7.1 no")}}})
		_, err := send(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
		var te *Error
		if !errors.As(err, &te) || te.AfterDot || te.Stage != StageDot {
			t.Errorf("valid %d to the dot: err = %v, want a plain refusal at the dot", code, err)
		}
	}
}

// TestRepliesBounded: however long a relay's reply, what transport reports
// of it (the error delivery stores and logs, the transcript) keeps at most
// 512 bytes a line and 4 KiB in all, and says where it was cut.
func TestRepliesBounded(t *testing.T) {
	long := strings.Repeat("x", 1500)
	lines := make([]string, 200)
	for i := range lines {
		lines[i] = "5.7.1 line " + itoa(i) + " " + strings.Repeat("y", 100)
	}
	cases := map[string]smtptest.Step{
		"one long line": smtptest.Reply(550, "5.7.1 "+long),
		"many lines":    smtptest.Reply(550, strings.Join(lines, "\n")),
		"long and many": smtptest.Reply(550, strings.Join(append([]string{"5.7.1 " + long}, lines...), "\n")),
		"long 451":      smtptest.Reply(451, "4.3.0 "+long),
	}
	for name, step := range cases {
		t.Run(name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Rcpt: map[string][]smtptest.Step{"*": {step}}}})
			res, err := send(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			var se *smtp.SMTPError
			if !errors.As(res.Recipients[0].Err, &se) {
				t.Fatalf("recipient err = %v, want the relay's reply", res.Recipients[0].Err)
			}
			checkBounded(t, se.Message)
			checkBounded(t, res.Recipients[0].Err.Error())
		})
	}
}

func checkBounded(t *testing.T, s string) {
	t.Helper()
	if len(s) > maxReply {
		t.Errorf("reply of %d bytes kept, want at most %d", len(s), maxReply)
	}
	for _, l := range strings.Split(s, "\n") {
		if len(l) > maxReplyLine {
			t.Errorf("line of %d bytes kept, want at most %d", len(l), maxReplyLine)
		}
	}
	if !strings.Contains(s, "cut]") {
		t.Errorf("no cut marker in %q", s[:min(len(s), 200)])
	}
	if boundReply(s) != s {
		t.Errorf("bounding again changes the reply")
	}
}
