package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// peerUsers are the Dovecot users of the peer tests.
var peerUsers = map[string]string{
	"alice@" + peerDomain: "alice-Pa55",
	"bob@" + peerDomain:   "bob-Pa55",
}

// viaPostfix sets relayq's [relay] to Postfix's smtpd on 127.0.0.1:
// STARTTLS required, the certificate checked against the test CA and
// tls.servername, AUTH as user with pass.
func viaPostfix(pf *postfix, caFile, user, pass string) func(settings) {
	return func(s settings) {
		s.set("relay", "url", tomlString("smtp://"+pf.Addr))
		s.set("relay.tls", "ca_file", tomlString(caFile))
		s.set("relay.tls", "servername", tomlString(pf.Name))
		s.set("relay.tls", "require_tls", "true")
		s.set("relay.auth", "user", tomlString(user))
		s.set("relay.auth", "pass", tomlString(pass))
	}
}

// checkDelivered checks one message as Dovecot stored it: the message relayq
// was given, byte for byte, after the header lines Postfix and Dovecot
// prepend, and the envelope sender (Return-Path) as submitted. It returns the prepended header lines.
func checkDelivered(t *testing.T, stored, sent []byte, rcpt, from string) string {
	t.Helper()
	added, ok := splitDelivered(stored, sent)
	if !ok {
		t.Errorf("message in the Maildir of %s is not the one sent after prepended header lines:\n got %q\nwant …%q", rcpt, stored, sent)
		return added
	}
	// Dovecot writes Delivered-To only when the transaction had a single
	// recipient; the Maildir the message is in already names the recipient.
	if got := headerValue(added, "Delivered-To"); got != "" && got != rcpt {
		t.Errorf("Delivered-To %q, want envelope recipient %s", got, rcpt)
	}
	if got := headerValue(added, "Return-Path"); got != "<"+from+">" {
		t.Errorf("Return-Path %q, want envelope sender <%s>", got, from)
	}
	return added
}

// TestPeerPostfixSubmission: `relayq sendmail` → relayq → Postfix smtpd
// (STARTTLS with a certificate from a private CA in tls.ca_file,
// require_tls, AUTH through Dovecot SASL) → Dovecot LMTP → Maildir. Every
// message arrives once per recipient, byte for byte after the headers the
// peers add, with the envelope relayq was given, over TLS with an
// authenticated session.
func TestPeerPostfixSubmission(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	dir := peerDir(t)
	dv := startDovecot(t, dir, peerUsers)
	pf := startPostfix(t, dir, dv, "["+strings.Replace(dv.LMTPAddr, ":", "]:", 1))
	alice, bob := "alice@"+peerDomain, "bob@"+peerDomain
	d := newDaemon(t, nil)
	viaPostfix(pf, pf.caFile(t, d.dir), alice, peerUsers[alice])(d.settings)
	d.writeConfig()
	d.start()

	from := "sender@example.org"
	type msg struct {
		to   []string
		body []byte
	}
	var msgs []msg
	for seq, to := range [][]string{{alice, bob}, {alice}, {bob}} {
		body := newMessage(100+seq, from, to, 20+seq*40)
		if seq == 0 {
			// 8-bit text, and a line that is only a dot (-i: not the end
			// of the input): both must cross every hop untouched.
			body = append(body, "Grüße aus Köln — 8-bit UTF-8\r\n.\r\nlast line\r\n"...)
		}
		msgs = append(msgs, msg{to, body})
		if res := d.sendmail(body, append([]string{"-i", "-f", from}, to...)...); res.code != 0 {
			t.Fatalf("relayq sendmail: %v", res)
		}
	}

	want := map[string][]msg{} // recipient → messages, in any order
	for _, m := range msgs {
		for _, rcpt := range m.to {
			want[rcpt] = append(want[rcpt], m)
		}
	}
	for rcpt, ms := range want {
		got := dv.waitMail(t, rcpt, len(ms), 30*time.Second)
		if len(got) != len(ms) {
			t.Errorf("%s has %d messages, want %d", rcpt, len(got), len(ms))
		}
		for _, stored := range got {
			i := slices.IndexFunc(ms, func(m msg) bool { return seqOf(m.body) == seqOf(stored) })
			if i < 0 {
				t.Errorf("%s got a message it should not have (X-Seq %d)", rcpt, seqOf(stored))
				continue
			}
			added := checkDelivered(t, stored, ms[i].body, rcpt, from)
			// Postfix's Received: ESMTPSA is ESMTP with TLS and AUTH.
			if !strings.Contains(added, "with ESMTPSA") || !strings.Contains(added, "Authenticated sender: "+alice) {
				t.Errorf("headers added by the peers do not show a TLS, authenticated submission as %s:\n%s", alice, added)
			}
		}
	}
	d.waitQueueEmpty(t, 10*time.Second)
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("dead letters: %+v", dead)
	}
	if l := pf.logLines("sasl_method=PLAIN", "sasl_username="+alice); len(l) == 0 {
		t.Errorf("Postfix logged no AUTH PLAIN login as %s", alice)
	}
}

// TestPeerPostfixWrongPassword: relayq → Postfix smtpd with the wrong
// password. Dovecot refuses it, Postfix says 535: the message stays queued,
// deferred with Postfix's reply, not dead-lettered, and nothing reaches the
// Maildir.
func TestPeerPostfixWrongPassword(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	dir := peerDir(t)
	dv := startDovecot(t, dir, peerUsers)
	pf := startPostfix(t, dir, dv, "unix:"+dv.LMTPSock)
	alice, wrong := "alice@"+peerDomain, "not-"+peerUsers["alice@"+peerDomain]
	d := newDaemon(t, nil)
	viaPostfix(pf, pf.caFile(t, d.dir), alice, wrong)(d.settings)
	d.writeConfig()
	d.start()

	from := "wrongpw@example.org"
	id := d.submit(t, from, []string{alice}, newMessage(200, from, []string{alice}, 5))
	r := waitDeferred(t, d, id)
	t.Logf("deferred: %+v", r)
	if r.ReplyCode != 535 || !strings.HasPrefix(r.LastReply, "535") || !strings.Contains(r.LastReply, "authentication failed") {
		t.Errorf("deferred with %d %q, want Postfix's 535 … authentication failed", r.ReplyCode, r.LastReply)
	}
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("dead letters after an authentication failure: %+v", dead)
	}
	if l := pf.logLines("authentication failed"); len(l) == 0 {
		t.Errorf("Postfix logged no authentication failure")
	}
	if got := dv.mail(t, alice); len(got) != 0 {
		t.Errorf("%d message(s) delivered with a wrong password", len(got))
	}
	if strings.Contains(d.log.String(), wrong) {
		t.Errorf("relayq logged the password")
	}
}

// TestPeerDovecotLMTP: relayq → Dovecot LMTP directly, over TCP and over
// its unix socket. A message to two users and one unknown address: both
// Maildirs get it byte for byte, once; the unknown address is a dead letter
// with Dovecot's 550 reply; nothing is retried.
func TestPeerDovecotLMTP(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	dir := peerDir(t)
	dv := startDovecot(t, dir, peerUsers)
	alice, bob, nobody := "alice@"+peerDomain, "bob@"+peerDomain, "nobody@"+peerDomain
	for i, url := range []string{"lmtp://" + dv.LMTPAddr, "lmtp+unix://" + dv.LMTPSock} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			d := startDaemon(t, nil, func(s settings) { s.set("relay", "url", tomlString(url)) })
			from := "lmtp@example.org"
			to := []string{alice, nobody, bob}
			body := newMessage(300+i, from, to, 30)
			id := d.submit(t, from, to, body)

			for _, rcpt := range []string{alice, bob} {
				got := dv.waitMail(t, rcpt, i+1, 20*time.Second)
				j := slices.IndexFunc(got, func(m []byte) bool { return seqOf(m) == 300+i })
				if j < 0 {
					t.Fatalf("the message is not in the Maildir of %s", rcpt)
				}
				checkDelivered(t, got[j], body, rcpt, from)
			}
			d.waitQueueEmpty(t, 10*time.Second)
			dl, found := findDead(d.deadList(t), id)
			if !found || len(dl.Recipients) != 1 {
				t.Fatalf("dead letter %+v (found %v), want %s alone", dl, found, nobody)
			}
			r := dl.Recipients[0]
			if r.Address != nobody || r.ReplyCode != 550 || r.Enhanced != "5.1.1" || !strings.Contains(r.LastReply, "User doesn't exist") {
				t.Errorf("dead recipient %+v, want %s with Dovecot's 550 5.1.1 User doesn't exist", r, nobody)
			}
			waitFor(t, 5*time.Second, "three delivery log lines", func() bool { return len(d.deliveryLog(id)) >= 3 })
			statuses := map[string][]string{}
			for _, l := range d.deliveryLog(id) {
				statuses[l["rcpt"]] = append(statuses[l["rcpt"]], l["status"])
			}
			for rcpt, w := range map[string][]string{alice: {"sent"}, bob: {"sent"}, nobody: {"dead"}} {
				if !slices.Equal(statuses[rcpt], w) {
					t.Errorf("log statuses for %s: %v, want %v", rcpt, statuses[rcpt], w)
				}
			}
			for _, rcpt := range []string{alice, bob} {
				if n := len(dv.mail(t, rcpt)); n != i+1 {
					t.Errorf("%s has %d messages, want %d", rcpt, n, i+1)
				}
				// Dovecot's log process writes the line soon after the save.
				saved := func() int {
					return len(dv.logLines("lmtp("+rcpt+")", "saved mail to INBOX", fmt.Sprintf("<%d.", 300+i)))
				}
				waitFor(t, 5*time.Second, "Dovecot to log the save for "+rcpt, func() bool { return saved() > 0 })
				if n := saved(); n != 1 {
					t.Errorf("Dovecot saved the message for %s %d times, want once", rcpt, n)
				}
			}
		})
	}
}

// TestPeerPostfixImplicitTLS: relayq → Postfix smtpd in wrapper mode
// (smtps://, TLS from the first byte, no require_tls needed) with AUTH →
// Dovecot → Maildir.
func TestPeerPostfixImplicitTLS(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	dir := peerDir(t)
	dv := startDovecot(t, dir, peerUsers)
	pf := startPostfix(t, dir, dv, "unix:"+dv.LMTPSock)
	bob := "bob@" + peerDomain
	d := newDaemon(t, nil)
	viaPostfix(pf, pf.caFile(t, d.dir), bob, peerUsers[bob])(d.settings)
	d.settings.set("relay", "url", tomlString("smtps://"+pf.SAddr))
	d.settings.del("relay.tls", "require_tls")
	d.writeConfig()
	d.start()

	from := "smtps@example.org"
	body := newMessage(500, from, []string{bob}, 10)
	d.submit(t, from, []string{bob}, body)
	added := checkDelivered(t, dv.waitMail(t, bob, 1, 30*time.Second)[0], body, bob, from)
	if !strings.Contains(added, "with ESMTPSA") || !strings.Contains(added, "Authenticated sender: "+bob) {
		t.Errorf("headers added by the peers do not show a TLS, authenticated submission as %s:\n%s", bob, added)
	}
	if l := pf.logLines("sasl_username=" + bob); len(l) != 1 {
		t.Errorf("Postfix logged %d logins as %s, want 1: %q", len(l), bob, l)
	}
	d.waitQueueEmpty(t, 10*time.Second)
}

// TestPeerSwaksEndToEnd: swaks → relayq's loopback listener → Postfix smtpd
// (STARTTLS, AUTH) → Dovecot LMTP (unix socket) → Maildir.
func TestPeerSwaksEndToEnd(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		if os.Getenv(realPeersEnv) != "" {
			t.Fatal("swaks is not installed (tests/run.sh installs it)")
		}
		t.Skip("swaks is not installed; tests/run.sh installs it")
	}
	dir := peerDir(t)
	dv := startDovecot(t, dir, peerUsers)
	pf := startPostfix(t, dir, dv, "unix:"+dv.LMTPSock)
	bob := "bob@" + peerDomain
	port := freePort(t)
	d := newDaemon(t, nil, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf(`["127.0.0.1:%d"]`, port))
	})
	viaPostfix(pf, pf.caFile(t, d.dir), bob, peerUsers[bob])(d.settings)
	d.writeConfig()
	d.start()

	from := "swaks@example.org"
	res := runCmd(swaks, nil,
		"--server", "127.0.0.1", "--port", strconv.Itoa(port),
		"--from", from, "--to", bob,
		"--header", "X-Seq: 400", "--body", "sent by swaks through relayq, Postfix and Dovecot")
	if res.code != 0 {
		t.Fatalf("swaks: %v", res)
	}
	got := dv.waitMail(t, bob, 1, 30*time.Second)[0]
	if seqOf(got) != 400 || !bytes.Contains(got, []byte("sent by swaks through relayq, Postfix and Dovecot")) {
		t.Errorf("message in the Maildir is not swaks's:\n%s", got)
	}
	header, _, _ := strings.Cut(string(got), "\r\n\r\n")
	if headerValue(header, "Delivered-To") != bob || headerValue(header, "Return-Path") != "<"+from+">" {
		t.Errorf("envelope lost on the way:\n%s", header)
	}
	if !strings.Contains(header, "with ESMTPSA") {
		t.Errorf("Postfix's Received shows no TLS, authenticated session:\n%s", header)
	}
	d.waitQueueEmpty(t, 10*time.Second)
}
