package spool

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// The headers Prepare adds to a message that has none, for user "cron" on
// host.test, with the random part of the Message-ID written as RANDOM.
const added = "Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <20261125120000.RANDOM@host.test>\r\n" +
	"From: <cron@host.test>\r\n"

var messageIDRandom = regexp.MustCompile(`(Message-ID: <\d{14}\.)[0-9a-f]{16}(@)`)

func TestPrepare(t *testing.T) {
	tests := []struct {
		name  string
		opts  PrepareOptions
		input string
		from  string
		rcpts []string
		body  string
	}{
		{
			name:  "headers added, LF made CRLF, recipient qualified",
			opts:  PrepareOptions{Recipients: []string{"root"}},
			input: "Subject: hi\n\nhello\n",
			from:  "cron@host.test",
			rcpts: []string{"root@host.test"},
			body:  "Subject: hi\r\n" + added + "\r\nhello\r\n",
		},
		{
			name:  "headers present are kept",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "From: Me <me@example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "From: Me <me@example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n",
		},
		{
			name: "-t takes To, Cc and Bcc, removes Bcc, merges the arguments",
			opts: PrepareOptions{ExtractRecipients: true, Recipients: []string{"arg@example.com", "b@example.com"}},
			input: "To: A <a@example.com>, b@example.com\n" +
				"Cc: c@example.com\n" +
				"Bcc: secret@example.com,\n  other-secret@example.com\n" +
				"Subject: x\n\nbody\n",
			from:  "cron@host.test",
			rcpts: []string{"arg@example.com", "b@example.com", "a@example.com", "c@example.com", "secret@example.com", "other-secret@example.com"},
			body:  "To: A <a@example.com>, b@example.com\r\nCc: c@example.com\r\nSubject: x\r\n" + added + "\r\nbody\r\n",
		},
		{
			name:  "-t with a group and an unqualified name",
			opts:  PrepareOptions{ExtractRecipients: true},
			input: "To: undisclosed-recipients:;\nCc: Root <root>, admin\n\n",
			from:  "cron@host.test",
			rcpts: []string{"root@host.test", "admin@host.test"},
			body:  "To: undisclosed-recipients:;\r\nCc: Root <root>, admin\r\n" + added + "\r\n",
		},
		{
			// Resending (RFC 5322 §3.6.6): the Resent- fields name the
			// new recipients; To and Cc are the first sending's.
			name: "-t on a resent message takes Resent-To, -Cc and -Bcc, removes Bcc and Resent-Bcc",
			opts: PrepareOptions{ExtractRecipients: true},
			input: "To: first@example.com\nBcc: first-secret@example.com\n" +
				"Resent-From: me@example.org\nResent-To: again@example.com\nresent-cc: c@example.com\n" +
				"Resent-Bcc: hidden@example.com,\n  hidden2@example.com\nSubject: x\n\nbody\n",
			from:  "cron@host.test",
			rcpts: []string{"again@example.com", "c@example.com", "hidden@example.com", "hidden2@example.com"},
			body:  "To: first@example.com\r\nResent-From: me@example.org\r\nResent-To: again@example.com\r\nresent-cc: c@example.com\r\nSubject: x\r\n" + added + "\r\nbody\r\n",
		},
		{
			name:  "Resent-Bcc removed without -t too",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "Resent-To: a@example.com\nRESENT-BCC: hidden@example.com\nSubject: x\n\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Resent-To: a@example.com\r\nSubject: x\r\n" + added + "\r\n",
		},
		{
			name:  "Bcc removed without -t too",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "BCC: hidden@example.com\nSubject: x\n\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\n",
		},
		{
			name:  "a line with a single dot ends the input",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "Subject: x\n\nbefore\n.\nafter\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\nbefore\r\n",
		},
		{
			name:  "only a line with a single dot",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "Subject: x\r\n\r\n..\r\n.x\r\n .\r\n.\r\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\n..\r\n.x\r\n .\r\n",
		},
		{
			name:  "-i keeps dot lines",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}, IgnoreDots: true},
			input: "Subject: x\n\nbefore\n.\nafter",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\nbefore\r\n.\r\nafter\r\n",
		},
		{
			name:  "bare CR and smuggling sequences normalised",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}, IgnoreDots: true},
			input: "Subject: x\r\rone\r.\rtwo\n.\r\nthree\r\n.\nfour",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\none\r\n.\r\ntwo\r\n.\r\nthree\r\n.\r\nfour\r\n",
		},
		{
			name:  "no header at all",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "just text: not a header\nsecond line\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  added + "\r\njust text: not a header\r\nsecond line\r\n",
		},
		{
			name:  "header without separator",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "Subject: x\nthis line is body\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\nthis line is body\r\n",
		},
		{
			name:  "mbox From line dropped",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "From cron Wed Nov 25 12:00:00 2026\nSubject: x\n\nFrom here on\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\nFrom here on\r\n",
		},
		{
			name:  "empty input",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  added + "\r\n",
		},
		{
			name:  "-f and -F",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}, From: "backup", FullName: "Backup Job"},
			input: "\n",
			from:  "backup@host.test",
			rcpts: []string{"a@example.com"},
			body:  strings.Replace(added, "From: <cron@host.test>", `From: "Backup Job" <backup@host.test>`, 1) + "\r\n",
		},
		{
			name:  "-f <> is the null sender",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}, From: "<>"},
			input: "Subject: bounce\n\n",
			from:  "",
			rcpts: []string{"a@example.com"},
			body:  "Subject: bounce\r\n" + added + "\r\n",
		},
		{
			name:  "recipients in one argument, duplicates dropped",
			opts:  PrepareOptions{Recipients: []string{"a@example.com, <b@example.com>", "a@EXAMPLE.COM"}},
			input: "Subject: x\n\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com", "b@example.com"},
			body:  "Subject: x\r\n" + added + "\r\n",
		},
		{
			name:  "5000-character line",
			opts:  PrepareOptions{Recipients: []string{"a@example.com"}},
			input: "Subject: x\n\n" + strings.Repeat("j", 5000) + "\n",
			from:  "cron@host.test",
			rcpts: []string{"a@example.com"},
			body:  "Subject: x\r\n" + added + "\r\n" + strings.Repeat("j", 5000) + "\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.User, tt.opts.Hostname, tt.opts.Now = "cron", "host.test", testNow
			p, err := Prepare(strings.NewReader(tt.input), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.From != tt.from {
				t.Errorf("sender %q, want %q", p.From, tt.from)
			}
			if !reflect.DeepEqual(p.Recipients, tt.rcpts) {
				t.Errorf("recipients %q, want %q", p.Recipients, tt.rcpts)
			}
			body := messageIDRandom.ReplaceAllString(string(p.Body), "${1}RANDOM${2}")
			if body != tt.body {
				t.Errorf("body\n%q\nwant\n%q", body, tt.body)
			}
			if !crlfOnly(string(p.Body)) {
				t.Errorf("body has a bare CR or LF")
			}
		})
	}
}

func TestPrepareErrors(t *testing.T) {
	rcpt := []string{"a@example.com"}
	tests := []struct {
		name  string
		opts  PrepareOptions
		input string
		want  error
	}{
		{"header injection through -f", PrepareOptions{Recipients: rcpt, From: "x@y.example\nBcc: z@w.example"}, "", ErrBadAddress},
		{"header injection through -F", PrepareOptions{Recipients: rcpt, FullName: "Name\nBcc: z@w.example"}, "", ErrBadAddress},
		{"CR in -F", PrepareOptions{Recipients: rcpt, FullName: "Name\r"}, "", ErrBadAddress},
		{"command injection through a recipient", PrepareOptions{Recipients: []string{"a@b.example\r\nRCPT TO:<x@y.example>"}}, "", ErrBadAddress},
		{"ESMTP parameter through a recipient", PrepareOptions{Recipients: []string{"a@b.example> SIZE=1"}}, "", ErrBadAddress},
		{"option-like recipient", PrepareOptions{Recipients: []string{"-X/tmp/log"}}, "", ErrBadAddress},
		{"NUL in a recipient", PrepareOptions{Recipients: []string{"a@b.example\x00"}}, "", ErrBadAddress},
		{"sender is a list", PrepareOptions{Recipients: rcpt, From: "a@example.org, b@example.org"}, "", ErrBadAddress},
		{"-t with a bad To", PrepareOptions{ExtractRecipients: true}, "To: a@b@c\n\n", ErrBadAddress},
		{"NUL in the body", PrepareOptions{Recipients: rcpt}, "Subject: x\n\na\x00b\n", ErrBadMessage},
		{"too large", PrepareOptions{Recipients: rcpt, MaxSize: 100}, strings.Repeat("x", 101), ErrBadMessage},
		{"too large once normalised", PrepareOptions{Recipients: rcpt, MaxSize: 100}, strings.Repeat("\n", 60), ErrBadMessage},
		{"no recipients", PrepareOptions{}, "Subject: x\n\n", ErrNoRecipients},
		{"-t and no recipient headers", PrepareOptions{ExtractRecipients: true}, "Subject: x\n\n", ErrNoRecipients},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.User, tt.opts.Hostname, tt.opts.Now = "cron", "host.test", testNow
			_, err := Prepare(strings.NewReader(tt.input), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Prepare: %v, want %v", err, tt.want)
			}
		})
	}
}
