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
