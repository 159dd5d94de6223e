package tests

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// jsonRecords parses the daemon's log, which must be JSON lines (the
// harness's own "-----" run markers aside).
func jsonRecords(t *testing.T, d *daemon) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(d.log.String()) {
		if strings.HasPrefix(line, "-----") {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON (%v): %q", err, line)
			continue
		}
		recs = append(recs, rec)
	}
	return recs
}

// deliverOne submits one message and waits until the relay has it.
func deliverOne(t *testing.T, d *daemon, relay *smtptest.Server) {
	t.Helper()
	from, to := "debug@example.org", []string{"rcpt@example.net"}
	d.submit(t, from, to, newMessage(1, from, to, 3))
	relay.WaitMessages(t, 1, 15*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)
}

// TestDaemonDebugConversation: SMTP on the unix socket → relayq (relay.debug
// = true, log level info, JSON) → smtptest relay over STARTTLS with AUTH
// PLAIN and LOGIN. The daemon's log shows the conversation at info level,
// each line with its connection id and direction (MAIL FROM, RCPT TO, the
// relay's replies, the body as its size), and no form of the password.
func TestDaemonDebugConversation(t *testing.T) {
	const user, pass = "relayq", "Debug-Pa55-word"
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{user: pass}})
			d := newDaemon(t, relay, func(s settings) {
				s.set("relay", "debug", "true")
				s.set("relay.auth", "user", tomlString(user))
				s.set("relay.auth", "pass", tomlString(pass))
				s.set("relay.auth", "method", tomlString(mech))
				s.set("log", "format", `"json"`)
			})
			trustRelay(t, d, relay)
			d.writeConfig()
			d.start()
			deliverOne(t, d, relay)
			d.stop()

			var conv []string
			for _, rec := range jsonRecords(t, d) {
				if rec["msg"] != "relay conversation" {
					continue
				}
				if rec["level"] != "INFO" || rec["conn"] == nil {
					t.Errorf("conversation record %v: want level INFO and a conn id", rec)
				}
				conv = append(conv, rec["dir"].(string)+": "+rec["line"].(string))
			}
			all := strings.Join(conv, "\n")
			for _, want := range []string{"C: STARTTLS", "C: AUTH " + mech, "S: 235 2.7.0", "C: MAIL FROM:<debug@example.org>",
				"C: RCPT TO:<rcpt@example.net>", "S: 250 2.1.5 Ok", "S: 354", "C: <message body: ", "S: 250 2.0.0 Ok: queued as"} {
				if !strings.Contains(all, want) {
					t.Errorf("conversation lacks %q", want)
				}
			}
			b64 := base64.StdEncoding.EncodeToString
			for _, secret := range []string{pass, b64([]byte("\x00" + user + "\x00" + pass)), b64([]byte(user + "\x00" + user + "\x00" + pass)),
				b64([]byte(user)), b64([]byte(pass))} {
				if strings.Contains(d.log.String(), secret) {
					t.Errorf("the daemon's log holds %q", secret)
				}
			}
			if t.Failed() {
				t.Logf("conversation:\n%s", all)
			}
		})
	}
}

// TestDaemonLogSettings: relayq serve with each [log] level and format →
// smtptest relay, one message delivered. JSON lines parse as JSON, text
// lines as logfmt; debug records show at level debug only, and nothing
// below warn shows at warn.
func TestDaemonLogSettings(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	for _, tc := range []struct {
		level, format string
		wantLevels    []string // levels that must appear
		banned        []string // levels that must not
	}{
		{"debug", "json", []string{"DEBUG", "INFO"}, nil},
		{"info", "text", []string{"INFO"}, []string{"DEBUG"}},
		{"warn", "json", nil, []string{"DEBUG", "INFO"}},
	} {
		t.Run(tc.level+" "+tc.format, func(t *testing.T) {
			d := startDaemon(t, relay, func(s settings) {
				s.set("log", "level", tomlString(tc.level))
				s.set("log", "format", tomlString(tc.format))
			})
			deliverOne(t, d, relay)
			d.stop()
			seen := map[string]bool{}
			if tc.format == "json" {
				for _, rec := range jsonRecords(t, d) {
					seen[rec["level"].(string)] = true
				}
			} else {
				for line := range strings.Lines(d.log.String()) {
					if strings.HasPrefix(line, "-----") {
						continue
					}
					rec := parseLogfmt(strings.TrimSpace(line))
					if rec["time"] == "" || rec["level"] == "" || rec["msg"] == "" {
						t.Errorf("log line is not slog text: %q", line)
					}
					seen[rec["level"]] = true
				}
			}
			for _, l := range tc.wantLevels {
				if !seen[l] {
					t.Errorf("no %s record in the log", l)
				}
			}
			for _, l := range tc.banned {
				if seen[l] {
					t.Errorf("a %s record in the log at level %s", l, tc.level)
				}
			}
		})
	}
}
