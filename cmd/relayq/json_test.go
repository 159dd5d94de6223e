package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"relayq/queue"
	"relayq/transport/smtptest"
)

// TestJSONOutputsConsistent decodes every --json output for a message with
// a deferred and a dead recipient and an attempt in its history, and
// checks that they speak alike: every reply is {code, enhanced, lines}
// (queue list used to give a string plus reply_code and enhanced_code,
// queue status the same, verify the relay's replies as strings and its
// error as flat fields), and every duration
// is a Go duration string like "1.5s" (status gave *_seconds floats, show
// gave an attempt's duration in nanoseconds).
func TestJSONOutputsConsistent(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"later@example.net": {smtptest.Reply(450, "4.2.1 Mailbox busy")}},
	}})
	s := newOpsSetup(t, "[relay]\nurl = \"smtp://"+relay.Addr()+"\"\n")
	id := s.put(t, "a@y.org", "b@y.org")
	ls, err := s.q.Lease(1)
	if err != nil || len(ls) != 1 {
		t.Fatalf("lease: %v %v", ls, err)
	}
	_, err = s.q.RecordAttempt(ls[0], queue.Attempt{Relay: "smtp://relay.example:25", Duration: 1500 * time.Millisecond}, []queue.Outcome{
		{Address: "a@y.org", Result: queue.Deferred, Reply: &queue.Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"Try", "later"}}, NextAttempt: time.Now().Add(time.Hour)},
		{Address: "b@y.org", Result: queue.Failed, Reply: &queue.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"no such user"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"queue", "list", "--json"},
		{"dead", "list", "--json"},
		{"queue", "show", id, "--json"},
		{"dead", "show", id, "--json"},
		{"queue", "status", id, "--json"},
		{"status", "--json"},
		{"mailq", "--json"},
		{"queue", "retry", id, "--json"},
		{"verify", "--json", "--from", "me@example.org", "--to", "ok@example.net,later@example.net"},
	} {
		code, out, errOut := s.relayq(args...)
		var v any
		if err := json.Unmarshal([]byte(out), &v); (code != exitOK && args[0] != "verify") || err != nil {
			t.Errorf("relayq %s: exit %d, %v\n%s%s", strings.Join(args, " "), code, err, out, errOut)
			continue
		}
		replies := checkJSON(t, strings.Join(args, " "), "", v)
		if wantReplies := !strings.HasPrefix(args[1], "retry") && args[0] != "status"; wantReplies && replies == 0 {
			t.Errorf("relayq %s: no reply found in\n%s", strings.Join(args, " "), out)
		}
	}
}

// checkJSON walks a decoded --json output and reports what breaks the
// conventions; it returns how many replies it found.
func checkJSON(t *testing.T, cmd, path string, v any) (replies int) {
	t.Helper()
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			replies += checkJSON(t, cmd, path+"[]", e)
		}
	case map[string]any:
		for k, e := range v {
			p := path + "." + k
			switch {
			case strings.HasSuffix(k, "_seconds"), k == "reply_code", k == "enhanced_code":
				t.Errorf("relayq %s: %s: want durations as strings and replies as {code, enhanced, lines}", cmd, p)
			case k == "reply" || k == "last_reply" || k == "greeting":
				r, ok := e.(map[string]any)
				if _, lines := r["lines"].([]any); !ok || r["code"] == nil || !lines {
					t.Errorf("relayq %s: %s = %v, want {code, enhanced, lines}", cmd, p, e)
				}
				replies++
			case k == "duration" || k == "uptime" || strings.HasSuffix(k, "_age"):
				if s, ok := e.(string); !ok {
					t.Errorf("relayq %s: %s = %v, want a duration string", cmd, p, e)
				} else if _, err := time.ParseDuration(s); err != nil {
					t.Errorf("relayq %s: %s = %q: %v", cmd, p, s, err)
				}
			}
			replies += checkJSON(t, cmd, p, e)
		}
	}
	return replies
}
