package rewrite

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func mustNew(t *testing.T, o Options) *Rules {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRecipient: qualification, aliases (several targets, recursive),
// admin_address and the unknown policy, on recipients a user would send to.
func TestRecipient(t *testing.T) {
	base := Options{
		Domain:       "web1.example.net",
		LocalDomains: []string{"vm", "localhost"},
		Aliases: map[string][]string{
			"root":       {"ops@example.com"},
			"postmaster": {"root"},
			"team":       {"a@example.com", "B@Example.com", "B@example.COM"},
		},
	}
	admin := base
	admin.AdminAddress = "admin@example.com"
	refuse := base
	refuse.RefuseUnknown = true
	for _, tc := range []struct {
		name string
		o    Options
		in   string
		want []string
		err  error
	}{
		{"bare name qualified", base, "www-data", []string{"www-data@web1.example.net"}, nil},
		{"short host name qualified", base, "www-data@vm", []string{"www-data@web1.example.net"}, nil},
		{"remote kept", base, "x@other.org", []string{"x@other.org"}, nil},
		{"alias", base, "root", []string{"ops@example.com"}, nil},
		{"alias case and host", base, "ROOT@localhost", []string{"ops@example.com"}, nil},
		{"recursive alias", base, "postmaster", []string{"ops@example.com"}, nil},
		{"several targets, duplicates once", base, "team", []string{"a@example.com", "B@Example.com"}, nil},
		{"admin_address takes unknown local", admin, "www-data", []string{"admin@example.com"}, nil},
		{"admin_address after aliases", admin, "root", []string{"ops@example.com"}, nil},
		{"admin_address leaves remote", admin, "x@other.org", []string{"x@other.org"}, nil},
		{"unknown refused", refuse, "nobody", nil, ErrUnknown},
		{"known with refuse", refuse, "root@vm", []string{"ops@example.com"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mustNew(t, tc.o).Recipient(tc.in)
			if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
				t.Errorf("Recipient(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

// TestAliasLoop: a loop is found when the rules are made (at start), with
// the chain named.
func TestAliasLoop(t *testing.T) {
	_, err := New(Options{Domain: "d.example", Aliases: map[string][]string{
		"a": {"b"}, "b": {"c@localhost"}, "c": {"a"},
	}, LocalDomains: []string{"localhost"}})
	if !errors.Is(err, ErrLoop) || !strings.Contains(err.Error(), "a → b → c → a") {
		t.Fatalf("err = %v, want a loop a → b → c → a", err)
	}
}

// TestParseAliases: the aliases(5) format, and pipes, files and :include:
// refused with the file and line.
func TestParseAliases(t *testing.T) {
	good := "# comment\nroot: ops@example.com,\n  oncall@example.com\n\npostmaster: root\n\"www-data\": web@example.com\n"
	got, err := ParseAliases(strings.NewReader(good), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["root"], []string{"ops@example.com", "oncall@example.com"}) || !slices.Equal(got["postmaster"], []string{"root"}) || len(got["www-data"]) != 1 {
		t.Errorf("ParseAliases = %q", got)
	}
	bad := "root: ops@example.com\nbackup: |/usr/bin/backup\nlog: /var/log/mail\nlist: :include:/etc/list\nroot: again@example.com\n bad continuation\n"
	_, err = ParseAliases(strings.NewReader("# x\n\n"+bad), "/etc/aliases")
	for _, want := range []string{
		`/etc/aliases:4: alias backup: pipe target "|/usr/bin/backup" refused`,
		`/etc/aliases:5: alias log: file target "/var/log/mail" refused`,
		`/etc/aliases:6: alias list: ":include:/etc/list" refused`,
		`/etc/aliases:7: alias root defined again (first on line 3)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
}

// TestSender: envelope_from always or for local senders only, masquerade,
// qualification, and the null sender left alone.
func TestSender(t *testing.T) {
	o := Options{Domain: "host.example.com", LocalDomains: []string{"vm"}, Masquerade: []string{"example.com"}}
	local := o
	local.EnvelopeFrom = "noreply@example.com"
	always := local
	always.EnvelopeFromWhen = Always
	for _, tc := range []struct {
		o        Options
		in, want string
	}{
		{o, "root", "root@example.com"},
		{o, "app@db.example.com", "app@example.com"},
		{o, "app@example.org", "app@example.org"},
		{local, "root@vm", "noreply@example.com"},
		{local, "app@example.org", "app@example.org"},
		{always, "app@example.org", "noreply@example.com"},
		{always, "", ""},
	} {
		if got := mustNew(t, tc.o).Sender(tc.in); got != tc.want {
			t.Errorf("Sender(%q) = %q, want %q (%+v)", tc.in, got, tc.want, tc.o)
		}
	}
}

// TestMessage: [defaults] precedence (the message's own field wins), the
// From rewrite keeping the display name and the body bytes exact.
func TestMessage(t *testing.T) {
	body := "\r\nline one \r\n\r\nFrom: not a header\r\n.\r\n"
	o := Options{
		Domain: "example.net", LocalDomains: []string{"vm"},
		Defaults: []Field{{"From", "App <app@example.net>"}, {"Reply-To", "help@example.net"}, {"List-Unsubscribe", "<mailto:unsub@example.net>"}},
	}
	fromHeader := o
	fromHeader.FromHeader, fromHeader.FromToReplyTo = "noreply@example.com", true
	for _, tc := range []struct {
		name string
		o    Options
		in   string
		want string
	}{
		{"defaults fill what is missing", o,
			"Subject: hi\r\nReply-To: mine@example.org\r\n",
			"Subject: hi\r\nReply-To: mine@example.org\r\nFrom: App <app@example.net>\r\nList-Unsubscribe: <mailto:unsub@example.net>\r\n"},
		{"local From qualified, folding kept elsewhere", o,
			"From: CronDaemon <root@vm>\r\nSubject: a\r\n folded\r\nList-Unsubscribe: <x>\r\nReply-To: r@example.org\r\n",
			"From: \"CronDaemon\" <root@example.net>\r\nSubject: a\r\n folded\r\nList-Unsubscribe: <x>\r\nReply-To: r@example.org\r\n"},
		{"cron's bare From", o,
			"From: root (Cron Daemon)\r\nList-Unsubscribe: <x>\r\nReply-To: r@example.org\r\n",
			"From: \"Cron Daemon\" <root@example.net>\r\nList-Unsubscribe: <x>\r\nReply-To: r@example.org\r\n"},
		{"bare From in angle brackets", o,
			"From: Cron <root>\r\nList-Unsubscribe: <x>\r\nReply-To: r@example.org\r\n",
			"From: \"Cron\" <root@example.net>\r\nList-Unsubscribe: <x>\r\nReply-To: r@example.org\r\n"},
		{"from_header keeps the name, original to Reply-To", fromHeader,
			"From: =?utf-8?q?J=C3=B6rg?= <joerg@vm>\r\nList-Unsubscribe: <x>\r\n",
			"From: =?utf-8?q?J=C3=B6rg?= <noreply@example.com>\r\nList-Unsubscribe: <x>\r\nReply-To: joerg@example.net\r\n"},
		{"from_header local only leaves remote", fromHeader,
			"From: a@example.org\r\nReply-To: r@x.org\r\nList-Unsubscribe: <x>\r\n",
			"From: a@example.org\r\nReply-To: r@x.org\r\nList-Unsubscribe: <x>\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in + body)
			_, got := mustNew(t, tc.o).Message("x@example.org", in)
			if string(got) != tc.want+body {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want+body)
			}
			// Nothing to change: the message itself comes back, uncopied.
			if unchanged := tc.in == tc.want; unchanged != (&got[0] == &in[0]) {
				t.Errorf("header unchanged %v, but the message returned is the one given: %v", unchanged, &got[0] == &in[0])
			}
		})
	}
}
