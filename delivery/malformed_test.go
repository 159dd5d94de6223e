package delivery

import (
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestMalformedDotReplyIsUncertain: whatever a relay answers to the final
// dot that is not a valid reply (999 foo, abc, 354…), the message is
// retried and the retry is logged as a possible duplicate, never dead-
// lettered and never retried as if it had been refused; for SMTP and for
// each LMTP recipient.
func TestMalformedDotReplyIsUncertain(t *testing.T) {
	for _, raw := range []string{"999 foo\r\n", "abc\r\n", "570 5.7.0 odd\r\n", "354 more?\r\n", "600 x\r\n"} {
		for _, lmtp := range []bool{false, true} {
			name := "SMTP " + strings.TrimSpace(raw)
			opts := smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{{Raw: raw}}}}
			if lmtp {
				name = "LMTP " + strings.TrimSpace(raw)
				opts = smtptest.Options{LMTP: true, Script: smtptest.Script{
					LMTP: map[string][]smtptest.Step{"a@there.example": {{Raw: raw}}},
				}}
			}
			t.Run(name, func(t *testing.T) {
				r := start(t, opts, RetryPolicy{}, 0)
				r.put(t, "x\r\n", "a@there.example")
				r.relay.WaitMessages(t, 2, 10*time.Second) // the first attempt (taken) and the retry
				r.emptied(t)
				logs := r.logs.String()
				if !strings.Contains(logs, "possible_duplicate=true") {
					t.Errorf("retry not logged as a possible duplicate:\n%s", logs)
				}
				if strings.Contains(logs, "status=dead") {
					t.Errorf("dead-lettered:\n%s", logs)
				}
			})
		}
	}
}

// TestBareDotReplyDeliveredOnce: a relay that answers the final dot with a
// bare "250" (no text, valid per RFC 5321 §4.2), or every command with its
// code alone, has the message delivered once: no retry, no possible
// duplicate. Before, textproto refused the bare 250 ("short response"), the
// outcome was unknown and the message went again.
func TestBareDotReplyDeliveredOnce(t *testing.T) {
	tests := []struct {
		name string
		opts smtptest.Options
	}{
		{"SMTP dot", smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{{Raw: "250\r\n"}}}}},
		{"LMTP dot", smtptest.Options{LMTP: true, Script: smtptest.Script{
			LMTP: map[string][]smtptest.Step{"*": {{Raw: "250\r\n"}, {Raw: "250\r\n"}}},
		}}},
		{"SMTP all bare", smtptest.Options{BareReplies: true}},
		{"LMTP all bare", smtptest.Options{LMTP: true, BareReplies: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, tc.opts, RetryPolicy{}, 0)
			r.put(t, "x\r\n", "a@there.example", "b@there.example")
			r.relay.WaitMessages(t, 1, 10*time.Second)
			r.emptied(t)
			if got := r.relay.Messages(); len(got) != 1 || len(got[0].To) != 2 {
				t.Errorf("relay has %d messages (%+v), want one to both recipients", len(got), got)
			}
			if logs := r.logs.String(); strings.Contains(logs, "possible_duplicate=true") || strings.Contains(logs, "status=deferred") {
				t.Errorf("the bare 250 was not taken as delivered:\n%s", logs)
			}
		})
	}
}
