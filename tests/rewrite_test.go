package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// cronMessage is what cron writes to sendmail's standard input.
const cronMessage = "From: root (Cron Daemon)\n" +
	"To: root\n" +
	"Subject: Cron <root@vm> /usr/local/bin/backup\n" +
	"Content-Type: text/plain; charset=UTF-8\n" +
	"\n" +
	"backup: 3 files\n"

// onVM is a host whose host name is the unqualified "vm" ([submission]
// hostname stands for it: the test cannot rename the machine), with
// [rewrite] domain set to the name relays accept.
func onVM(s settings) {
	s.set("submission", "hostname", `"vm"`)
	s.set("rewrite", "domain", `"web1.example.net"`)
}

// TestCronRootAlias: cron's exact command line `sendmail -FCronDaemon -i
// -B8BITMIME -oem root` → relayq (unix socket) → smtptest relay. The relay
// gets RCPT TO the alias of root, not root@vm; MAIL FROM and the From
// header are qualified with [rewrite] domain, the From keeping cron's name.
func TestCronRootAlias(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("aliases", "root", `["ops@example.com", "oncall"]`)
		s.set("aliases", "oncall", `"pager@example.org"`)
	})
	if res := d.sendmail([]byte(cronMessage), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"); res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	if want := []string{"ops@example.com", "pager@example.org"}; !slices.Equal(got.To, want) {
		t.Errorf("RCPT TO %q, want %q (root's aliases)", got.To, want)
	}
	if !strings.HasSuffix(got.From, "@web1.example.net") {
		t.Errorf("MAIL FROM %q, want it qualified with web1.example.net", got.From)
	}
	header, body, _ := strings.Cut(string(got.Body), "\r\n\r\n")
	if !strings.Contains(header, "\r\nFrom: \"Cron Daemon\" <root@web1.example.net>\r\n") {
		t.Errorf("From not qualified (keeping the name):\n%s", header)
	}
	if !strings.Contains(header, "\r\nTo: root\r\n") || body != "backup: 3 files\r\n" {
		t.Errorf("To header or body changed:\n%s", got.Body)
	}
}

// TestQualifyEveryWayIn: www-data on a host named web1.example.net leaves
// as www-data@web1.example.net by every way in: sendmail (socket), SMTP on
// the socket with the short host name, and sendmail with the daemon down
// (maildrop, imported at start). With [rewrite] domain it leaves with that
// domain instead.
func TestQualifyEveryWayIn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(settings)
		domain string
	}{
		{"host name", func(s settings) { s.set("submission", "hostname", `"web1.example.net"`) }, "web1.example.net"},
		{"rewrite domain", func(s settings) {
			s.set("submission", "hostname", `"web1"`)
			s.set("rewrite", "domain", `"example.net"`)
		}, "example.net"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := smtptest.NewServer(t, smtptest.Options{})
			d := startDaemon(t, relay, tc.edit)
			d.stop() // the state directory and the maildrop exist now
			msg := []byte("Subject: q\n\nhi\n")
			// Daemon down: the maildrop.
			if res := d.sendmail(msg, "-f", "www-data", "www-data"); res.code != 0 {
				t.Fatalf("sendmail to the maildrop: %v", res)
			}
			d.start()
			if res := d.sendmail(msg, "-f", "www-data", "www-data"); res.code != 0 {
				t.Fatalf("sendmail: %v", res)
			}
			host, _ := os.Hostname()
			d.submit(t, "www-data@localhost", []string{"www-data@" + host}, []byte("Subject: q\r\n\r\nhi\r\n"))
			want := "www-data@" + tc.domain
			for i, m := range relay.WaitMessages(t, 3, 15*time.Second) {
				if m.From != want || !slices.Equal(m.To, []string{want}) {
					t.Errorf("message %d: MAIL FROM %q RCPT TO %q, want %s for both", i, m.From, m.To, want)
				}
			}
		})
	}
}

// TestUnknownRecipientRefused: with [aliases] unknown = "refuse", a local
// name no alias names is refused at intake: sendmail exits 67 (EX_NOUSER)
// with the 550 5.1.1, RCPT on the socket gets 550 5.1.1, and nothing
// reaches the relay or the dead letters. A known alias and a remote
// address still go.
func TestUnknownRecipientRefused(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("aliases", "unknown", `"refuse"`)
		s.set("aliases", "root", `"ops@example.com"`)
	})
	res := d.sendmail([]byte("Subject: x\n\nx\n"), "-f", "app@example.org", "nobody")
	if res.code != 67 || !strings.Contains(res.stderr, "550 5.1.1") {
		t.Errorf("sendmail nobody: %v; want exit 67 with 550 5.1.1", res)
	}
	dialog(t, "unix", d.submitSocket(), []exchange{
		{"", "220 "},
		{"EHLO tests", "250"},
		{"MAIL FROM:<app@example.org>", "250"},
		{"RCPT TO:<nobody@vm>", "550 5.1.1 "},
		{"RCPT TO:<root@localhost>", "250"},
		{"RCPT TO:<x@example.org>", "250"},
		{"QUIT", "221"},
	})
	if res := d.sendmail([]byte("Subject: y\n\ny\n"), "-f", "app@example.org", "root"); res.code != 0 {
		t.Fatalf("sendmail root: %v", res)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if !slices.Equal(got[0].To, []string{"ops@example.com"}) {
		t.Errorf("RCPT TO %q, want ops@example.com", got[0].To)
	}
	d.waitQueueEmpty(t, 10*time.Second)
	if dead := d.deadList(t); len(dead) != 0 || len(relay.Messages()) != 1 {
		t.Errorf("dead letters %v, relay got %d messages; want none and 1", dead, len(relay.Messages()))
	}
}

// TestAdminAddress: admin_address takes every local recipient no alias
// names, by name or at a local domain; an alias and a remote address go
// where they say.
func TestAdminAddress(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("aliases", "admin_address", `"sysadmin@example.com"`)
		s.set("aliases", "postmaster", `"pm@example.com"`)
	})
	if res := d.sendmail([]byte("Subject: x\n\nx\n"), "-f", "app@example.org", "www-data", "root@localhost", "postmaster", "user@example.org"); res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	want := []string{"pm@example.com", "sysadmin@example.com", "user@example.org"}
	if to := slices.Sorted(slices.Values(got.To)); !slices.Equal(to, want) {
		t.Errorf("RCPT TO %q, want %q", to, want)
	}
}

// TestAliasLoopAtStart: an alias loop stops the daemon at start (exit 78)
// with the chain named; an aliases_file with a pipe is refused with its
// file and line.
func TestAliasLoopAtStart(t *testing.T) {
	d := newDaemon(t, nil, func(s settings) {
		s.set("aliases", "a", `"b"`)
		s.set("aliases", "b", `"a@localhost"`)
	})
	p := d.spawn()
	<-p.done
	if p.exitCode() != 78 || !strings.Contains(d.log.String(), "alias loop: a → b → a") {
		t.Errorf("exit %d, log:\n%s\nwant 78 and the loop a → b → a", p.exitCode(), d.log.String())
	}

	aliases := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(aliases, []byte("root: ops@example.com\nbackup: \"|/usr/bin/backup\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d = newDaemon(t, nil, func(s settings) { s.set("aliases", "aliases_file", tomlString(aliases)) })
	p = d.spawn()
	<-p.done
	if want := aliases + `:2: alias backup: pipe target "|/usr/bin/backup" refused`; p.exitCode() != 78 || !strings.Contains(d.log.String(), want) {
		t.Errorf("exit %d, log:\n%s\nwant 78 and %q", p.exitCode(), d.log.String(), want)
	}
	for _, argv := range [][]string{{"newaliases", "-c", d.config}, {"sendmail", "-c", d.config, "-bi"}} {
		res := runCmd(relayqBin, nil, argv...)
		if res.code != 65 || !strings.Contains(res.stderr, aliases+":2: ") {
			t.Errorf("relayq %q: %v; want exit 65 naming line 2", argv, res)
		}
	}
}

// TestSenderPolicy: sendmail and SMTP on the socket → relayq → smtptest
// relay, with envelope_from and from_header for local senders,
// from_to_reply_to and masquerade_domains. A local sender leaves as the
// policy's address, the From keeping its display name and the original
// (masqueraded) going to Reply-To; a remote sender at a host below a
// masquerade domain loses the host part; another remote sender is kept.
func TestSenderPolicy(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("rewrite", "envelope_from", `"noreply@example.com"`)
		s.set("rewrite", "from_header", `"noreply@example.com"`)
		s.set("rewrite", "from_to_reply_to", "true")
		s.set("rewrite", "masquerade_domains", `["example.net"]`)
	})
	if res := d.sendmail([]byte("Subject: local\n\nx\n"), "-f", "backup", "-F", "Backup Job", "ops@example.com"); res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	d.submit(t, "app@db.example.net", []string{"ops@example.com"}, []byte("From: App <app@db.example.net>\r\nSubject: masq\r\n\r\nx\r\n"))
	d.submit(t, "app@example.org", []string{"ops@example.com"}, []byte("From: App <app@example.org>\r\nSubject: remote\r\n\r\nx\r\n"))
	got := relay.WaitMessages(t, 3, 15*time.Second)
	for _, tc := range []struct {
		subject, from string
		header        []string
		absent        string
	}{
		{"local", "noreply@example.com", []string{"\r\nFrom: \"Backup Job\" <noreply@example.com>\r\n", "\r\nReply-To: backup@example.net\r\n"}, ""},
		{"masq", "app@example.net", []string{"\r\nFrom: \"App\" <app@example.net>\r\n"}, "Reply-To"},
		{"remote", "app@example.org", []string{"\r\nFrom: App <app@example.org>\r\n"}, "Reply-To"},
	} {
		m := messageWithSubject(t, got, tc.subject)
		header, _, _ := strings.Cut(string(m.Body), "\r\n\r\n")
		if m.From != tc.from {
			t.Errorf("%s: MAIL FROM %q, want %q", tc.subject, m.From, tc.from)
		}
		for _, want := range tc.header {
			if !strings.Contains(header+"\r\n", want) {
				t.Errorf("%s: header lacks %q:\n%s", tc.subject, want, header)
			}
		}
		if tc.absent != "" && strings.Contains(header, tc.absent) {
			t.Errorf("%s: header has %s:\n%s", tc.subject, tc.absent, header)
		}
	}
}

// messageWithSubject finds the message whose Subject is subject.
func messageWithSubject(t *testing.T, msgs []smtptest.Received, subject string) smtptest.Received {
	t.Helper()
	for _, m := range msgs {
		if strings.Contains(string(m.Body), "\r\nSubject: "+subject+"\r\n") {
			return m
		}
	}
	t.Fatalf("no message with Subject %q", subject)
	return smtptest.Received{}
}

// TestDefaultsHeaders: SMTP on the socket → relayq → smtptest relay with
// [defaults]: a message without From, Reply-To and List-Unsubscribe gets
// them; a message with its own keeps them (the message's field wins).
func TestDefaultsHeaders(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("defaults", "from", `"Web Robot <robot@example.com>"`)
		s.set("defaults", "reply_to", `"help@example.com"`)
		s.set("defaults.headers", "List-Unsubscribe", `"<mailto:unsub@example.com>"`)
	})
	d.submit(t, "app@example.com", []string{"u@example.org"}, []byte("Subject: bare\r\n\r\nx\r\n"))
	d.submit(t, "app@example.com", []string{"u@example.org"}, []byte("From: Me <me@example.org>\r\nReply-To: mine@example.org\r\nList-Unsubscribe: <https://example.org/u>\r\nSubject: own\r\n\r\nx\r\n"))
	got := relay.WaitMessages(t, 2, 15*time.Second)
	bare, _, _ := strings.Cut(string(messageWithSubject(t, got, "bare").Body), "\r\n\r\n")
	for _, want := range []string{"\r\nFrom: Web Robot <robot@example.com>", "\r\nReply-To: help@example.com", "\r\nList-Unsubscribe: <mailto:unsub@example.com>"} {
		if !strings.Contains(bare, want) {
			t.Errorf("message without them lacks %q:\n%s", want, bare)
		}
	}
	own, _, _ := strings.Cut(string(messageWithSubject(t, got, "own").Body), "\r\n\r\n")
	if strings.Contains(own, "example.com") || strings.Count(own, "Reply-To") != 1 {
		t.Errorf("a message's own fields were changed or doubled:\n%s", own)
	}
}

// TestRewriteDryRun: `relayq rewrite --dry-run` prints the envelope and the
// header the relay then gets from sendmail with the same arguments: the
// same MAIL FROM and RCPT TOs, and the same header but for the Received
// line the daemon puts first.
func TestRewriteDryRun(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("aliases", "root", `["ops@example.com", "oncall@example.com"]`)
		s.set("rewrite", "from_header", `"noreply@example.com"`)
		s.set("rewrite", "from_to_reply_to", "true")
		s.set("defaults.headers", "List-Unsubscribe", `"<mailto:unsub@example.com>"`)
	})
	msg := []byte("Subject: dry\nDate: Mon, 7 Dec 2026 06:00:00 +0000\nMessage-ID: <dry@example.net>\n\nbody\n")
	args := []string{"-f", "backup", "-F", "Backup Job", "root", "user@example.org"}
	res := runCmd(relayqBin, msg, append([]string{"rewrite", "--dry-run", "-c", d.config}, args...)...)
	if res.code != 0 {
		t.Fatalf("rewrite --dry-run: %v", res)
	}
	if sm := d.sendmail(msg, args...); sm.code != 0 {
		t.Fatalf("sendmail: %v", sm)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	want := asDryRun("default", "default", got) // routepolicy_test.go
	if !strings.HasPrefix(res.stdout, want) {
		t.Errorf("dry run printed\n%s\nthe relay got\n%s", res.stdout, want)
	}
	if !strings.Contains(res.stdout, "RCPT TO:<oncall@example.com>") || !strings.Contains(res.stdout, "From: \"Backup Job\" <noreply@example.com>") {
		t.Errorf("dry run does not show the rules applied:\n%s", res.stdout)
	}
}

// TestReloadAliases: an alias changed in the aliases_file takes effect at
// `relayq reload` (as newaliases does for Postfix), with no restart
// warning; a broken file is refused and the aliases in force stay.
func TestReloadAliases(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	aliases := filepath.Join(t.TempDir(), "aliases")
	write := func(text string) {
		if err := os.WriteFile(aliases, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("root: first@example.com\n")
	d := startDaemon(t, relay, onVM, func(s settings) { s.set("aliases", "aliases_file", tomlString(aliases)) })
	send := func() string {
		t.Helper()
		n := len(relay.Messages())
		if res := d.sendmail([]byte("Subject: r\n\nx\n"), "-f", "app@example.org", "root"); res.code != 0 {
			t.Fatalf("sendmail: %v", res)
		}
		return strings.Join(relay.WaitMessages(t, n+1, 15*time.Second)[n].To, ",")
	}
	if to := send(); to != "first@example.com" {
		t.Fatalf("RCPT TO %s, want first@example.com", to)
	}
	write("root: second@example.com\n")
	if res := runCmd(relayqBin, nil, "reload", "-c", d.config); res.code != 0 {
		t.Fatalf("relayq reload: %v", res)
	}
	if to := send(); to != "second@example.com" {
		t.Errorf("after reload: RCPT TO %s, want second@example.com", to)
	}
	if w := d.logRecords("reload: this setting changes only when relayq restarts; the old value stays in force"); len(w) != 0 {
		t.Errorf("reload warned %v", w)
	}
	write("root: |/bin/sh\n")
	if res := runCmd(relayqBin, nil, "reload", "-c", d.config); res.code != 78 || !strings.Contains(res.stderr, aliases+":1: alias root: pipe target") {
		t.Errorf("reload of a broken aliases file: %v; want 78 naming line 1", res)
	}
	if to := send(); to != "second@example.com" {
		t.Errorf("after a refused reload: RCPT TO %s, want second@example.com", to)
	}
}

// TestUnqualifiedDomainWarning: a host whose only name is "vm" (and no
// [rewrite] domain) starts, with a warning that relays reject addresses
// qualified with it.
func TestUnqualifiedDomainWarning(t *testing.T) {
	d := startDaemon(t, nil, func(s settings) { s.set("submission", "hostname", `"vm"`) })
	const msg = "addresses without a domain get one that is not fully qualified: relays reject such addresses; set [rewrite] domain"
	if w := d.logRecords(msg); len(w) != 1 || w[0]["domain"] != "vm" {
		t.Errorf("warnings %v; want one naming vm:\n%s", w, d.log.String())
	}
}

// TestMaildropRewriting: maildrop files (sendmail with the daemon down) →
// relayq's import → smtptest relay, with the intake's rules: root goes to
// its alias, the sender is qualified; a file for an unknown local name
// (unknown = "refuse") is set aside as <name>.bad with the reason logged,
// and the relay never sees it.
func TestMaildropRewriting(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, onVM, func(s settings) {
		s.set("aliases", "unknown", `"refuse"`)
		s.set("aliases", "root", `"ops@example.com"`)
	})
	msg := []byte("Subject: md\r\n\r\nx\r\n")
	bad := dropMaildropFile(t, d, "backup@vm", []string{"nobody@vm"}, msg)
	dropMaildropFile(t, d, "backup@vm", []string{"root@vm"}, msg)
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	if got.From != "backup@web1.example.net" || !slices.Equal(got.To, []string{"ops@example.com"}) {
		t.Errorf("MAIL FROM %q RCPT TO %q, want backup@web1.example.net to ops@example.com", got.From, got.To)
	}
	waitFor(t, 10*time.Second, "the file to be set aside", func() bool {
		_, err := os.Stat(filepath.Join(d.maildrop(), bad+".bad"))
		return err == nil
	})
	if set := d.logRecords("maildrop: file set aside, not imported"); len(set) != 1 || !strings.Contains(set[0]["why"], "unknown local recipient: nobody@vm") {
		t.Errorf("log: %v, want one line naming nobody@vm", set)
	}
	if n := len(relay.Messages()); n != 1 {
		t.Errorf("relay got %d messages, want 1", n)
	}
}
