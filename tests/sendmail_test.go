package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestSendmailSymlink: a program running sendmail (a symlink to
// relayq-sendmail, as installed) →
// relayq (unix socket) → smtptest relay. -t takes the recipients from To,
// Cc and Bcc and drops the Bcc field; -f sets the envelope sender; Date,
// Message-ID and From (with -F's name) are added when missing; bare LF line
// endings become CRLF; -v prints the queue ID.
func TestSendmailSymlink(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	msg := "To: to1@example.net\n" +
		"Cc: Cc User <cc1@example.net>\n" +
		"Bcc: hidden@example.net\n" +
		"Subject: via sendmail\n" +
		"\n" +
		"hello\n" +
		".a line starting with a dot\n"
	res := runCmd(sendmailLink, []byte(msg), "-c", d.config, "-t", "-oi", "-v", "-f", "sender@example.org", "-F", "Test User")
	if res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	if got.From != "sender@example.org" {
		t.Errorf("MAIL FROM %q, want sender@example.org", got.From)
	}
	wantTo := []string{"cc1@example.net", "hidden@example.net", "to1@example.net"}
	if to := slices.Sorted(slices.Values(got.To)); !slices.Equal(to, wantTo) {
		t.Errorf("RCPT TO %q, want %q", to, wantTo)
	}
	body := string(got.Body)
	if regexp.MustCompile(`[^\r]\n`).MatchString(body) {
		t.Errorf("body has bare LF line endings: %q", body)
	}
	header, text, _ := strings.Cut(body, "\r\n\r\n")
	for _, want := range []string{
		"To: to1@example.net\r\n", "Cc: Cc User <cc1@example.net>\r\n", "Subject: via sendmail\r\n",
		`From: "Test User" <sender@example.org>`, "Date: ", "Message-ID: <",
	} {
		if !strings.Contains(header+"\r\n", want) {
			t.Errorf("header lacks %q:\n%s", want, header)
		}
	}
	if strings.Contains(body, "Bcc") || strings.Contains(body, "hidden@") {
		t.Errorf("Bcc was not removed:\n%s", body)
	}
	if text != "hello\r\n.a line starting with a dot\r\n" {
		t.Errorf("message text %q, want the input's with CRLF", text)
	}

	waitFor(t, 5*time.Second, "a delivery log line", func() bool { return len(d.logRecords("delivery")) > 0 })
	id := d.logRecords("delivery")[0]["id"]
	if id == "" || !strings.Contains(res.stdout+res.stderr, id) {
		t.Errorf("sendmail -v said %q / %q; want the queue ID %q", res.stdout, res.stderr, id)
	}
}

// TestSwaksOverTCP: swaks → relayq (TCP listener on 127.0.0.1) → smtptest
// relay. In CI a missing swaks is a failure, elsewhere a skip.
func TestSwaksOverTCP(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("swaks is not installed (tests/run.sh installs it)")
		}
		t.Skip("swaks is not installed; tests/run.sh installs it")
	}
	relay := smtptest.NewServer(t, smtptest.Options{})
	port := freePort(t)
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf(`["127.0.0.1:%d"]`, port))
	})
	res := runCmd(swaks, nil,
		"--server", "127.0.0.1", "--port", strconv.Itoa(port),
		"--from", "swaks@example.org", "--to", "rcpt@example.net,second@example.com",
		"--header", "X-Seq: 11", "--body", "sent by swaks")
	if res.code != 0 {
		t.Fatalf("swaks: %v", res)
	}
	if m := queuedAs.FindStringSubmatch(res.stdout); m == nil {
		t.Errorf("swaks transcript shows no \"queued as\" reply:\n%s", res.stdout)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	if got.From != "swaks@example.org" || !slices.Equal(got.To, []string{"rcpt@example.net", "second@example.com"}) {
		t.Errorf("envelope %s → %q, want swaks@example.org → [rcpt@example.net second@example.com]", got.From, got.To)
	}
	if seqOf(got.Body) != 11 || !bytes.Contains(got.Body, []byte("sent by swaks")) {
		t.Errorf("body %q lacks swaks's header and text", got.Body)
	}
	// relayq's Received names the client as the loopback listener saw it.
	if m, _, _ := relayqReceived(got.Body); m == nil || !bytes.HasPrefix(m, []byte("Received: from ")) || !bytes.Contains(m, []byte(" ([127.0.0.1])\r\n\tby ")) {
		t.Errorf("body %q does not begin with relayq's Received naming the client [127.0.0.1]", got.Body)
	}
	d.waitQueueEmpty(t, 10*time.Second)
	q, _, _ := d.list("dead")
	if len(q) != 0 {
		t.Errorf("dead letters after a plain delivery: %+v", q)
	}
}

// TestSendmailBsSwaks: swaks --pipe 'relayq sendmail -bs', and the same
// with sendmail (relayq-sendmail), an SMTP session on the command's
// standard input and output as Alpine and others use it, → relayq →
// smtptest relay; once with the daemon running, once with it stopped (the
// session is answered by sendmail itself, relayq-sendmail handing it to
// relayq, and the message left in the maildrop until the daemon starts).
// The message arrives with its dot-stuffed line restored and relayq's
// Received naming this user's uid.
func TestSendmailBsSwaks(t *testing.T) {
	swaks := needTool(t, "swaks", "swaks")
	cases := []struct {
		command string
		down    bool
	}{
		{"'" + relayqBin + "' sendmail", false}, {"'" + relayqBin + "' sendmail", true},
		{"'" + sendmailLink + "'", false}, {"'" + sendmailLink + "'", true},
	}
	for i, c := range cases {
		down := c.down
		relay := smtptest.NewServer(t, smtptest.Options{})
		d := startDaemon(t, relay)
		if down && d.stop() != 0 {
			t.Fatal("relayq serve did not stop cleanly")
		}
		res := runCmd(swaks, nil, "--pipe", fmt.Sprintf("%s -bs -c '%s'", c.command, d.config),
			"--from", "bs@example.org", "--to", "rcpt@example.net",
			"--header", fmt.Sprintf("X-Seq: %d", 12+i), "--body", "sent by swaks -bs\n.a line starting with a dot")
		if res.code != 0 {
			t.Fatalf("swaks --pipe %s (daemon down: %v): %v", c.command, down, res)
		}
		want := "<-  250 2.0.0 Ok: queued as "
		if down {
			want = "<-  250 2.0.0 Ok: queued in the maildrop as "
		}
		if !strings.Contains(res.stdout, want) {
			t.Errorf("%s, daemon down: %v: swaks transcript shows no %q:\n%s", c.command, down, want, res.stdout)
		}
		if down {
			d.start()
		}
		got := relay.WaitMessages(t, 1, 15*time.Second)[0]
		if got.From != "bs@example.org" || !slices.Equal(got.To, []string{"rcpt@example.net"}) {
			t.Errorf("envelope %s → %q, want bs@example.org → [rcpt@example.net]", got.From, got.To)
		}
		uid := fmt.Sprintf("(relayq, from userid %d)", os.Getuid())
		if received, _, _ := relayqReceived(got.Body); seqOf(got.Body) != 12+i || !bytes.Contains(got.Body, []byte("sent by swaks -bs\r\n.a line starting with a dot\r\n")) ||
			!bytes.Contains(received, []byte(uid)) {
			t.Errorf("%s, daemon down: %v: body %q: want swaks's header and text and a Received with %s", c.command, down, got.Body, uid)
		}
	}
}

// TestNewaliasesSucceeds: newaliases (relayq-sendmail installed under that name),
// sendmail -bi and sendmail -I exit 0 and print nothing, so that Debian's
// maintainer scripts, which run them after installing an MTA, go on.
func TestNewaliasesSucceeds(t *testing.T) {
	newaliases := filepath.Join(t.TempDir(), "newaliases")
	if err := os.Symlink(sendmailBin, newaliases); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{newaliases}, {sendmailLink, "-bi"}, {sendmailLink, "-I"}} {
		if res := runCmd(argv[0], nil, argv[1:]...); res.code != 0 || res.stdout+res.stderr != "" {
			t.Errorf("%s: %v; want exit 0 and no output", strings.Join(argv, " "), res)
		}
	}
}

// TestSendmailCommandsAgree: relayq-sendmail (by its installed names) and
// `relayq sendmail` are one command: the same exit code and output for
// -bp (which relayq-sendmail hands to relayq), mailq, help, bad flags, a
// config that is not there, and a message queued.
func TestSendmailCommandsAgree(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	mailq := filepath.Join(filepath.Dir(sendmailLink), "mailq")
	if err := os.Symlink(sendmailBin, mailq); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	queueID := regexp.MustCompile(`queued as \S+`)
	msg := []byte("Subject: agree\n\nbody\n")
	for _, c := range []struct {
		small, relayq []string
	}{
		// The listings first, while the queue is empty: a message being
		// delivered between the two runs would tell them apart.
		{[]string{sendmailLink, "-bp", "-c", d.config}, []string{"sendmail", "-bp", "-c", d.config}},
		{[]string{mailq, "-c", d.config}, []string{"mailq", "-c", d.config}},
		{[]string{sendmailLink, "--help"}, []string{"sendmail", "--help"}},
		{[]string{sendmailLink, "-Z", "a@example.net"}, []string{"sendmail", "-Z", "a@example.net"}},
		{[]string{sendmailLink, "-X", "/tmp/log", "a@example.net"}, []string{"sendmail", "-X", "/tmp/log", "a@example.net"}},
		{[]string{sendmailLink, "-c", d.config, "-f", "<bad", "a@example.net"}, []string{"sendmail", "-c", d.config, "-f", "<bad", "a@example.net"}},
		{[]string{sendmailLink, "-c", d.config, "-v", "-f", "s@example.org", "a@example.net"}, []string{"sendmail", "-c", d.config, "-v", "-f", "s@example.org", "a@example.net"}},
		{[]string{sendmailLink, "-c", "/nonexistent.toml", "a@example.net"}, []string{"sendmail", "-c", "/nonexistent.toml", "a@example.net"}},
	} {
		small := runCmd(c.small[0], msg, c.small[1:]...)
		big := runCmd(relayqBin, msg, c.relayq...)
		norm := func(s string) string { return queueID.ReplaceAllString(s, "queued as ID") }
		if small.code != big.code || norm(small.stdout) != norm(big.stdout) || norm(small.stderr) != norm(big.stderr) {
			t.Errorf("%q: %v\nrelayq %q: %v", c.small, small, c.relayq, big)
		}
	}
}
