package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"relayq/cmd/internal/sendmail"
	"relayq/queue"
	"relayq/spool"
)

// sendmail looks the user up only when Prepare needs the name (see
// sendmail.NeedsUser): the default sender, and the From field of a null-sender
// message. Each case checks the envelope sender and the From field added
// to a message that has none.
func TestSendmailSenderAndFromField(t *testing.T) {
	s := newSendmailSetup(t, "")
	q := s.startIntake(t, queue.Options{}, spool.Options{})
	user := sendmail.LoginName(sendmail.Env{Getenv: os.Getenv}) + "@host.test"
	tests := []struct {
		name     string
		args     []string
		envelope string
		from     string
	}{
		{"no -f: the user", nil, user, "From: <" + user + ">"},
		{"-f <>: null sender, From names the user", []string{"-f", "<>"}, "", "From: <" + user + ">"},
		{"-f ' <> '", []string{"-f", " <> "}, "", "From: <" + user + ">"},
		{"-f given: no lookup needed", []string{"-f", "cron@example.org"}, "cron@example.org", "From: <cron@example.org>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"-c", s.config, "-v"}, tt.args...), "a@example.com")
			res := runSendmailTest("Subject: sender\n\nbody\n", args...)
			if res.code != exitOK {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			id, _ := strings.CutPrefix(strings.TrimSpace(res.stdout), "queued as ")
			m, err := q.Get(id)
			if err != nil {
				t.Fatalf("queue ID %q: %v", id, err)
			}
			if m.From != tt.envelope {
				t.Errorf("envelope sender %q, want %q", m.From, tt.envelope)
			}
			body, _ := io.ReadAll(q.Body(id))
			header, _, _ := strings.Cut(string(body), "\r\n\r\n")
			if !strings.Contains(header+"\r\n", tt.from+"\r\n") {
				t.Errorf("header lacks %q:\n%s", tt.from, header)
			}
		})
	}
}
