package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// chasquidRoot is where tests/run.sh unpacks Debian's chasquid (dpkg -x,
// never installed: as a mail transport agent it conflicts with postfix,
// which the other peer tests use).
const chasquidRoot = "/var/cache/relayq-test-chasquid/root"

// chasquidDomain is the test chasquid's local domain.
const chasquidDomain = "chasquid.test"

// chasquidLogin is the user relayq authenticates as (chasquid offers AUTH
// PLAIN only, and only after STARTTLS or on its implicit TLS port).
var chasquidLogin = [2]string{"relayq@" + chasquidDomain, "s3cret-chasquid"}

// chasquid is a private chasquid: its own configuration, data directory
// and delivery script, on loopback ports.
type chasquid struct {
	Submission string // STARTTLS, AUTH required: 127.0.0.1:port
	TLSAddr    string // submission over implicit TLS: 127.0.0.1:port
	Name       string // the only name in its certificate
	CA         *smtptest.CA
	dir        string
	proc       *peerProc
}

// requireChasquid skips the test (fails it under tests/run.sh, which
// unpacks it) when chasquid is not unpacked.
func requireChasquid(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(chasquidRoot, "usr/bin/chasquid")); err == nil {
		return
	}
	if os.Getenv(realPeersEnv) != "" {
		t.Fatalf("chasquid unavailable under %s=1 (tests/run.sh unpacks it): not unpacked in %s", realPeersEnv, chasquidRoot)
	}
	t.Skipf("chasquid unavailable (not unpacked in %s); tests/run.sh unpacks it", chasquidRoot)
}

// startChasquid runs chasquid in the foreground with a configuration of
// its own (every path in the test's directory: it needs no namespace and
// no user of its own), on free loopback ports: submission with STARTTLS
// and submission over implicit TLS, both with AUTH, a certificate from a
// private CA and a 1 MiB message limit. It delivers the local parts in
// users, at chasquidDomain, through a script that stores each message
// with the envelope in Delivered-To and Return-Path lines; any other
// local part gets its 550 5.1.1.
func startChasquid(t *testing.T, users []string) *chasquid {
	t.Helper()
	requireChasquid(t)
	dir := peerDir(t)
	c := &chasquid{
		Submission: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		TLSAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Name:       "mx." + chasquidDomain,
		CA:         smtptest.NewCA(t),
		dir:        dir,
	}
	conf := filepath.Join(dir, "conf")
	certs := filepath.Join(conf, "certs", c.Name)
	for _, d := range []string{certs, filepath.Join(conf, "domains", chasquidDomain), filepath.Join(dir, "data"), filepath.Join(dir, "tmp"), c.maildir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cert := c.CA.Issue(t, c.Name)
	writeFile(t, filepath.Join(certs, "fullchain.pem"), string(cert.CertPEM))
	if err := os.WriteFile(filepath.Join(certs, "privkey.pem"), cert.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	mda := filepath.Join(dir, "mda.sh")
	// Written in tmp, then renamed into mail, as into a Maildir: the test
	// never reads a message half written.
	if err := os.WriteFile(mda, []byte(`#!/bin/sh
# chasquid's delivery agent for the test: $1 is the recipient, $2 the sender.
f=$(mktemp "`+filepath.Join(dir, "tmp")+`/msg.XXXXXX") || exit 75
{ printf 'Delivered-To: %s\nReturn-Path: <%s>\n' "$1" "$2" && cat; } >"$f" && mv "$f" "`+c.maildir()+`/" || exit 75
`), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(conf, "chasquid.conf"), fmt.Sprintf(`# relayq tests: private instance
hostname: %q
max_data_size_mb: 1
smtp_address: "127.0.0.1:%d"
submission_address: %q
submission_over_tls_address: %q
mail_delivery_agent_bin: %q
mail_delivery_agent_args: "%%to%%"
mail_delivery_agent_args: "%%from%%"
data_dir: %q
mail_log_path: "<stderr>"
`, c.Name, freePort(t), c.Submission, c.TLSAddr, mda, filepath.Join(dir, "data")))
	util := filepath.Join(chasquidRoot, "usr/bin/chasquid-util")
	for _, u := range append([]string{chasquidLogin[0]}, users...) {
		addr, pass := u, chasquidLogin[1]
		if !strings.Contains(addr, "@") {
			addr, pass = u+"@"+chasquidDomain, "unused-"+u
		}
		if out, err := exec.Command(util, "-C="+conf, "user-add", addr, "--password="+pass).CombinedOutput(); err != nil {
			t.Fatalf("chasquid-util user-add %s: %v\n%s", addr, err, out)
		}
	}
	c.proc = startProc(t, exec.Command(filepath.Join(chasquidRoot, "usr/bin/chasquid"), "-config_dir", conf, "-alsologtostderr"))
	t.Cleanup(func() {
		c.proc.cmd.Process.Signal(syscall.SIGTERM)
		c.proc.waitExit(t, 15*time.Second)
		if t.Failed() {
			t.Logf("chasquid's output:\n%s", c.proc.out)
		}
	})
	waitGreets(t, c.proc, "chasquid", filepath.Join(conf, "chasquid.conf"), [2]string{"tcp", c.Submission})
	waitTLS(t, c.proc, "chasquid", filepath.Join(conf, "chasquid.conf"), c.TLSAddr)
	return c
}

func (c *chasquid) maildir() string { return filepath.Join(c.dir, "mail") }

// log is what chasquid has logged so far.
func (c *chasquid) log() string { return c.proc.out.String() }

// messages returns what chasquid delivered, each as stored, its LF line
// ends made CRLF again.
func (c *chasquid) messages(t *testing.T) [][]byte {
	t.Helper()
	entries, err := os.ReadDir(c.maildir())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(c.maildir(), en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
	}
	return out
}

// startDaemonFor starts a relayq that relays to c at addr (c.Submission,
// or c.TLSAddr with secure): TLS required and checked against c's CA and
// name, logged in as chasquidLogin with the mechanism relayq picks.
func (c *chasquid) startDaemonFor(t *testing.T, addr string, secure bool) *daemon {
	t.Helper()
	d := newDaemon(t, nil)
	caFile := filepath.Join(d.dir, "chasquid-ca.pem")
	writeFile(t, caFile, string(c.CA.CertPEM))
	scheme := "smtp://"
	if secure {
		scheme = "smtps://"
	}
	d.settings.set("relay", "url", tomlString(scheme+addr))
	d.settings.set("relay.tls", "ca_file", tomlString(caFile))
	d.settings.set("relay.tls", "servername", tomlString(c.Name))
	d.settings.set("relay.tls", "require_tls", "true")
	d.settings.set("relay.auth", "user", tomlString(chasquidLogin[0]))
	d.settings.set("relay.auth", "pass", tomlString(chasquidLogin[1]))
	d.writeConfig()
	d.start()
	return d
}

// TestChasquidRelay: `relayq sendmail` and SMTP on the Unix socket →
// relayq → chasquid 1.11 (Debian 12's; a strict Go MTA: SMTPUTF8, one
// AUTH mechanism, PLAIN) on its submission port, STARTTLS and AUTH
// required → its delivery agent → files.
func TestChasquidRelay(t *testing.T) {
	t.Run("STARTTLS and AUTH PLAIN", testChasquidSubmission)
	t.Run("implicit TLS", testChasquidImplicitTLS)
}

// testChasquidSubmission: 12 messages over pooled connections (a third
// through `relayq sendmail`), an 8-bit body, lines of 998 and 2,000
// octets and lines that begin with dots, an SMTPUTF8 envelope (chasquid
// offers SMTPUTF8), a recipient chasquid does not know (550 5.1.1 at
// RCPT: dead-lettered with chasquid's reply, the other recipient
// delivered) and a message over its 1 MiB limit (refused by relayq from
// chasquid's SIZE, never sent). Every message arrives once, byte for byte
// after the header lines chasquid and its delivery agent add, over TLS
// 1.3 with AUTH. Then relayq set to AUTH LOGIN, which chasquid does not
// offer: the message is deferred, naming what chasquid offers.
func testChasquidSubmission(t *testing.T) {
	t.Parallel()
	const n = 12
	c := startChasquid(t, append(numbered("user", n), "eight", "long", "mixed", "jürgen", "big", "login"))
	d := c.startDaemonFor(t, c.Submission, false)

	from := "sender@example.org"
	want := map[string]sentTo{} // recipient → message
	deliver := func(local string, body []byte, viaSendmail bool) {
		t.Helper()
		rcpt := local + "@" + chasquidDomain
		want[rcpt] = sentTo{body, from}
		if !viaSendmail {
			d.submit(t, from, []string{rcpt}, body)
		} else if res := d.sendmail(body, "-i", "-f", from, rcpt); res.code != 0 {
			t.Fatalf("relayq sendmail: %v", res)
		}
	}
	for i := range n {
		rcpt := fmt.Sprintf("user%d@%s", i, chasquidDomain)
		deliver(fmt.Sprintf("user%d", i), newMessage(i, from, []string{rcpt}, 10+i*7), i%3 == 0)
	}
	deliver("eight", append(newMessage(100, from, []string{"eight@" + chasquidDomain}, 3),
		"Grüße aus Köln — 8-bit UTF-8\r\n.\r\n..two dots\r\nlast line\r\n"...), true)
	deliver("long", append(newMessage(101, from, []string{"long@" + chasquidDomain}, 3),
		strings.Repeat("y", 998)+"\r\n."+strings.Repeat("z", 997)+"\r\n"+strings.Repeat("w", 2000)+"\r\nend\r\n"...), false)
	utf8Rcpt, utf8From := "jürgen@"+chasquidDomain, "sénder@example.org"
	utf8Body := []byte("From: <" + utf8From + ">\r\nTo: " + utf8Rcpt + "\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nX-Seq: 102\r\n\r\nUTF-8 envelope\r\n")
	want[utf8Rcpt] = sentTo{utf8Body, utf8From}
	if _, err := submitSMTPUTF8(d.submitSocket(), utf8From, utf8Rcpt, utf8Body); err != nil {
		t.Fatalf("SMTPUTF8 submission: %v", err)
	}
	mixed := newMessage(103, from, []string{"mixed@" + chasquidDomain, "nobody-here@" + chasquidDomain}, 4)
	want["mixed@"+chasquidDomain] = sentTo{mixed, from}
	d.submit(t, from, []string{"mixed@" + chasquidDomain, "nobody-here@" + chasquidDomain}, mixed)
	d.submit(t, from, []string{"big@" + chasquidDomain}, newMessage(104, from, []string{"big@" + chasquidDomain}, 20000))

	waitFor(t, 30*time.Second, fmt.Sprintf("chasquid to deliver %d messages", len(want)), func() bool {
		return len(c.messages(t)) >= len(want)
	})
	time.Sleep(time.Second) // a duplicate would come right after
	for rcpt, added := range storedOnce(t, "chasquid", c.messages(t), want) {
		if !strings.Contains(added, "by "+c.Name+" (chasquid) with ESMTPSA") || !strings.Contains(added, "(over submission, TLS-1.3, envelope from") {
			t.Errorf("%s: chasquid's Received does not show a submission over TLS 1.3 with AUTH:\n%s", rcpt, added)
		}
	}
	waitFor(t, 10*time.Second, "two dead letters", func() bool { return len(d.deadList(t)) == 2 })
	dead := deadReplies(t, d)
	if got, want := dead["nobody-here@"+chasquidDomain], "550 5.1.1 Destination address is unknown (user does not exist)"; got != want {
		t.Errorf("unknown recipient dead-lettered with %q, want chasquid's reply %q", got, want)
	}
	if got := dead["big@"+chasquidDomain]; !strings.HasPrefix(got, "552 5.3.4 refused by relayq:") || !strings.Contains(got, "SIZE limit 1048576") {
		t.Errorf("message over the size limit dead-lettered with %q, want relayq's 552 5.3.4 refusal naming chasquid's SIZE", got)
	}
	if lines := grepLines(c.log(), "big@"); len(lines) > 0 {
		t.Errorf("chasquid heard of the message over its size limit:\n%s", strings.Join(lines, "\n"))
	}
	// chasquid may store a message before relayq has recorded its 250.
	d.waitQueueEmpty(t, 10*time.Second)

	d.stop()
	d.settings.set("relay.auth", "method", `"LOGIN"`)
	d.writeConfig()
	d.start()
	to := []string{"login@" + chasquidDomain}
	id := d.submit(t, from, to, newMessage(105, from, to, 3))
	if r := waitDeferred(t, d, id); !strings.Contains(r.LastReply, "LOGIN") || !strings.Contains(r.LastReply, "PLAIN") {
		t.Errorf("with AUTH LOGIN, which chasquid does not offer: deferred with %q, want it to name LOGIN and what chasquid offers (PLAIN)", r.LastReply)
	}
}

// testChasquidImplicitTLS: relayq → chasquid's submission port in
// implicit TLS (smtps://), AUTH as relayq chooses: delivered once, byte
// for byte.
func testChasquidImplicitTLS(t *testing.T) {
	t.Parallel()
	c := startChasquid(t, []string{"tls"})
	d := c.startDaemonFor(t, c.TLSAddr, true)
	from, to := "tls@example.org", []string{"tls@" + chasquidDomain}
	body := newMessage(1, from, to, 5)
	if res := d.sendmail(body, "-i", "-f", from, to[0]); res.code != 0 {
		t.Fatalf("relayq sendmail: %v", res)
	}
	var got [][]byte
	waitFor(t, 15*time.Second, "chasquid to deliver the message", func() bool {
		got = c.messages(t)
		return len(got) == 1
	})
	if added := checkDelivered(t, got[0], body, to[0], from); !strings.Contains(added, "with ESMTPSA") || !strings.Contains(added, "over submission+TLS") {
		t.Errorf("chasquid's Received does not show a submission over implicit TLS with AUTH:\n%s", added)
	}
}
