package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// waitDeferred waits until `queue list` shows message id deferred for its
// only recipient, and returns that recipient's entry.
func waitDeferred(t *testing.T, d *daemon, id string) listedRcpt {
	t.Helper()
	var r listedRcpt
	waitFor(t, 15*time.Second, "queue list to show the message deferred", func() bool {
		for _, l := range d.queueList(t) {
			if l.ID == id && len(l.Recipients) == 1 && l.Recipients[0].Status == "deferred" && l.Recipients[0].LastReply != "" {
				r = l.Recipients[0]
				return true
			}
		}
		return false
	})
	return r
}

// sawMail reports whether the relay received a MAIL command at all.
func sawMail(relay *smtptest.Server) bool {
	for _, c := range relay.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), "MAIL") {
			return true
		}
	}
	return false
}

// TestSelfSignedRelayRefused: SMTP on the unix socket → relayq → smtptest
// relay offering STARTTLS with a self-signed certificate. By default the
// certificate is refused: the message stays queued, deferred with a reason
// that names the certificate, and the relay never sees MAIL. Restarted with
// relay.tls.ca_file holding that certificate, relayq delivers it over TLS.
func TestSelfSignedRelayRefused(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true})
	d := startDaemon(t, relay)
	from, to := "tls@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 5)
	id := d.submit(t, from, to, body)

	r := waitDeferred(t, d, id)
	t.Logf("last reply: %q", r.LastReply)
	if !strings.Contains(r.LastReply, "certificate") || !strings.Contains(r.LastReply, "not signed by a trusted authority") {
		t.Errorf("last reply %q, want it to say the relay's certificate is not trusted", r.LastReply)
	}
	if sawMail(relay) || len(relay.Messages()) != 0 {
		t.Errorf("relay saw MAIL although its certificate was refused: %q", relay.Commands())
	}

	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after SIGTERM", code)
	}
	caFile := filepath.Join(d.dir, "relay-ca.pem")
	if err := os.WriteFile(caFile, relay.Certificate().CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	d.settings.set("relay.tls", "ca_file", tomlString(caFile))
	d.writeConfig()
	d.start()

	got := relay.WaitMessages(t, 1, 15*time.Second)
	if !got[0].TLS || !sameMessage(got[0].Body, body) {
		t.Errorf("delivered with TLS %v, body equal %v; want the message, over TLS", got[0].TLS, sameMessage(got[0].Body, body))
	}
	d.waitQueueEmpty(t, 5*time.Second)
}

// TestRequireTLSStrippedRelay: SMTP on the unix socket → relayq
// (require_tls, with a login) → smtptest relay whose STARTTLS is stripped:
// not offered, and refused when tried. Nothing goes in clear: the message
// stays queued, deferred at the TLS stage, and the relay never sees MAIL or
// AUTH, nor the password on the wire.
func TestRequireTLSStrippedRelay(t *testing.T) {
	const pass = "hunter2-stripped"
	relay := smtptest.NewServer(t, smtptest.Options{
		TLS:     true,
		Without: []string{"STARTTLS"},
		Auth:    map[string]string{"relayq": pass},
	})
	d := startDaemon(t, relay, func(s settings) {
		s.set("relay.tls", "require_tls", "true")
		s.set("relay.auth", "user", `"relayq"`)
		s.set("relay.auth", "pass", tomlString(pass))
	})
	from, to := "strip@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(2, from, to, 5))

	r := waitDeferred(t, d, id)
	t.Logf("last reply: %q", r.LastReply)
	if !strings.Contains(r.LastReply, "502") {
		t.Errorf("last reply %q, want the relay's refusal of STARTTLS", r.LastReply)
	}
	for _, c := range relay.Commands() {
		if !strings.HasPrefix(c, "EHLO ") && c != "STARTTLS" {
			t.Errorf("relay saw %q in clear; only EHLO and STARTTLS may come before TLS", c)
		}
	}
	if sawMail(relay) || bytes.Contains(relay.Wire(), []byte(pass)) {
		t.Errorf("MAIL or the password went in clear")
	}
	if len(d.queueList(t)) != 1 || len(d.deadList(t)) != 0 {
		t.Errorf("want the message queued, not dead")
	}
}
