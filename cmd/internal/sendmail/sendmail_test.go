package sendmail

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"relayq/cmd/internal/sysexits"
	"relayq/spool"
)

func TestParseSendmailArgs(t *testing.T) {
	tests := []struct {
		args []string
		want sendmailArgs
	}{
		{[]string{"a@example.com"}, sendmailArgs{opts: spool.PrepareOptions{Recipients: []string{"a@example.com"}}}},
		{[]string{"-ti", "-v"}, sendmailArgs{verbose: true, opts: spool.PrepareOptions{ExtractRecipients: true, IgnoreDots: true}}},
		{[]string{"-oi", "-fme@example.org", "-F", "My Name"}, sendmailArgs{opts: spool.PrepareOptions{IgnoreDots: true, From: "me@example.org", FullName: "My Name"}}},
		{[]string{"-f", "me@example.org", "-FMy Name"}, sendmailArgs{opts: spool.PrepareOptions{From: "me@example.org", FullName: "My Name"}}},
		{[]string{"-tf", "me@example.org"}, sendmailArgs{opts: spool.PrepareOptions{ExtractRecipients: true, From: "me@example.org"}}},
		{[]string{"-r", "me@example.org"}, sendmailArgs{opts: spool.PrepareOptions{From: "me@example.org"}}},
		{[]string{"-c", "/etc/x.toml", "-odb", "-bm"}, sendmailArgs{config: "/etc/x.toml"}},
		{[]string{"--", "-t", "b@example.com"}, sendmailArgs{opts: spool.PrepareOptions{Recipients: []string{"-t", "b@example.com"}}}},
		{[]string{"a@example.com", "-t"}, sendmailArgs{opts: spool.PrepareOptions{Recipients: []string{"a@example.com", "-t"}}}},
		{[]string{"--help"}, sendmailArgs{help: true}},
		{[]string{"-bp"}, sendmailArgs{mode: modeList}},
		{[]string{"-q"}, sendmailArgs{mode: modeFlush}},
		{[]string{"-q30m", "a@example.com"}, sendmailArgs{opts: spool.PrepareOptions{Recipients: []string{"a@example.com"}}}},
	}
	for _, tt := range tests {
		got, err := parseSendmailArgs(tt.args)
		if err != nil {
			t.Errorf("parseSendmailArgs(%q): %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseSendmailArgs(%q) = %+v, want %+v", tt.args, got, tt.want)
		}
	}
}

func TestPrepareExit(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, sysexits.OK},
		{fmt.Errorf("header: %w", spool.ErrBadMessage), sysexits.DataErr},
		{fmt.Errorf("-f: %w", spool.ErrBadAddress), sysexits.NoUser},
		{spool.ErrNoRecipients, sysexits.Usage},
		{errors.New("read /dev/stdin: input/output error"), sysexits.IOErr},
	} {
		if got := PrepareExit(c.err); got != c.code {
			t.Errorf("PrepareExit(%v) = %d, want %d", c.err, got, c.code)
		}
	}
}

func TestNeedsUser(t *testing.T) {
	for from, want := range map[string]bool{"": true, "<>": true, " <> ": true, "cron@example.org": false, "cron": false} {
		if got := NeedsUser(from); got != want {
			t.Errorf("NeedsUser(%q) = %v, want %v", from, got, want)
		}
	}
}
