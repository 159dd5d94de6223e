package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// verify runs `relayq verify -c CONFIG args…` for d's configuration (the
// daemon is not started) and checks that it left no queue database behind.
func (d *daemon) verify(t *testing.T, args ...string) cmdResult {
	t.Helper()
	r := runCmdTimeout(30*time.Second, relayqBin, nil, append([]string{"verify", "-c", d.config}, args...)...)
	t.Logf("relayq verify %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	if _, err := os.Stat(filepath.Join(d.dir, "queue.db")); !os.IsNotExist(err) {
		t.Errorf("relayq verify touched the queue database (stat: %v)", err)
	}
	return r
}

// wantLines checks that out has, for each key, a line starting with key
// (padded as verify prints it) and containing the value.
func wantLines(t *testing.T, out string, want map[string]string) {
	t.Helper()
	for key, value := range want {
		found := false
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, key+" ") && strings.Contains(line, value) {
				found = true
			}
		}
		if !found {
			t.Errorf("output lacks a %q line with %q", key, value)
		}
	}
}

// noData fails if the relay saw a DATA command: verify never sends mail.
func noData(t *testing.T, relay *smtptest.Server) {
	t.Helper()
	if n := relay.DataAttempts(); n != 0 || len(relay.Messages()) != 0 {
		t.Errorf("the relay saw %d DATA commands; verify must send none", n)
	}
}

// TestVerifyReady: relayq verify → smtptest relay with STARTTLS (its
// certificate trusted through ca_file) and AUTH. Exit 0, and the report
// shows where it connected, the greeting, the extensions after TLS, the TLS
// facts and certificate, and the mechanism that authenticated. With --from
// and two --to it also shows the relay's 250s, and the relay saw MAIL, both
// RCPTs and RSET, never DATA.
func TestVerifyReady(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, MaxSize: 1 << 20, Auth: map[string]string{"relayq": "verify-secret"}})
	d := newDaemon(t, relay, func(s settings) {
		s.set("relay.auth", "user", `"relayq"`)
		s.set("relay.auth", "pass", `"verify-secret"`)
	})
	trustRelay(t, d, relay)
	d.writeConfig()

	r := d.verify(t)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	wantLines(t, r.stdout, map[string]string{
		"relay":       "smtp://" + relay.Addr(),
		"connected":   relay.Addr(),
		"greeting":    "220 smtptest.localhost ESMTP smtptest",
		"extensions":  "SIZE 1048576",
		"tls":         "TLS 1.3",
		"certificate": "CN=smtptest 127.0.0.1, issued by CN=smtptest 127.0.0.1",
		"expires":     "(in ",
		"verified":    "yes, for 127.0.0.1",
		"auth":        "PLAIN as relayq: ok 235 2.7.0",
		"result":      "ready",
	})
	if strings.Contains(r.stdout+r.stderr, "verify-secret") {
		t.Error("verify printed the password")
	}

	r = d.verify(t, "--from", "sender@example.org", "--to", "a@example.net", "--to", "b@example.net")
	if r.code != 0 {
		t.Fatalf("with an envelope: exit %d, want 0", r.code)
	}
	wantLines(t, r.stdout, map[string]string{
		"mail from": "<sender@example.org>: 250 2.1.0 Ok",
		"rcpt to":   "<b@example.net>: 250 2.1.5 Ok",
	})
	// (go-smtp says EHLO again after RSET; transport answers it from the
	// first reply, so the relay hears one EHLO per session.)
	cmds := strings.Join(relay.Commands(), "|")
	if !strings.Contains(cmds, "MAIL FROM:<sender@example.org>") || !strings.Contains(cmds, "RCPT TO:<a@example.net>|RCPT TO:<b@example.net>|RSET|") ||
		!strings.HasSuffix(cmds, "|QUIT") {
		t.Errorf("relay saw %q, want MAIL, both RCPTs, RSET, QUIT", cmds)
	}
	noData(t, relay)
}

// TestVerifySenderRefused: relayq verify --from --to → smtptest relay that
// refuses the sender with 550 5.7.1. Exit 69 (EX_UNAVAILABLE), the relay's
// reply in the output, no RCPT and no DATA sent.
func TestVerifySenderRefused(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Mail: []smtptest.Step{smtptest.Reply(550, "5.7.1 <nobody@example.org>: Sender address rejected: not owned by user")},
	}})
	d := newDaemon(t, relay)
	r := d.verify(t, "--from", "nobody@example.org", "--to", "a@example.net")
	if r.code != 69 {
		t.Errorf("exit %d, want 69", r.code)
	}
	wantLines(t, r.stdout, map[string]string{
		"mail from": "<nobody@example.org>: 550 5.7.1 <nobody@example.org>: Sender address rejected",
		"result":    "NOT READY (exit 69): mail: the relay replied 550 5.7.1",
	})
	if !strings.Contains(r.stderr, "550 5.7.1") {
		t.Errorf("stderr %q lacks the relay's reply", r.stderr)
	}
	for _, c := range relay.Commands() {
		if strings.HasPrefix(c, "RCPT") {
			t.Errorf("relay saw %q after refusing the sender", c)
		}
	}
	noData(t, relay)
}

// TestVerifyUnreachable: relayq verify → a port nobody listens on. Exit 69
// with the reason (connection refused) on stdout and stderr.
func TestVerifyUnreachable(t *testing.T) {
	d := newDaemon(t, nil)
	r := d.verify(t)
	if r.code != 69 {
		t.Errorf("exit %d, want 69", r.code)
	}
	if !strings.Contains(r.stdout, "connection refused") || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("output does not say the connection was refused")
	}
}

// TestVerifyJSON: relayq verify --json with a comma-separated --to →
// smtptest relay with implicit TLS whose certificate is not verified
// (reject_unauthorized = false), deferring one recipient with 450. Exit 75
// (EX_TEMPFAIL), and stdout is one JSON object with the same facts.
func TestVerifyJSON(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{ImplicitTLS: true, Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"later@example.net": {smtptest.Reply(450, "4.2.1 Mailbox busy")}},
	}})
	d := newDaemon(t, relay, func(s settings) {
		s.set("relay", "url", tomlString("smtps://"+relay.Addr()))
		s.set("relay.tls", "reject_unauthorized", "false")
	})
	r := d.verify(t, "--json", "--from", "me@example.org", "--to", "ok@example.net,later@example.net")
	if r.code != 75 {
		t.Errorf("exit %d, want 75", r.code)
	}
	var out struct {
		Ready  bool
		Exit   int
		Relays []struct {
			Relay      string
			Ready      bool
			Connected  string
			Greeting   *reply
			Extensions []string
			TLS        *struct {
				Version     string
				STARTTLS    bool
				Enforced    bool
				Verified    bool
				VerifyError string `json:"verify_error"`
				Subject     string
				NotAfter    time.Time `json:"not_after"`
			}
			Rcpt []struct {
				Address string
				OK      bool
				Reply   *reply
			}
			Error *struct {
				Stage string
				Reply *reply
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("stdout is not JSON: %v", err)
	}
	if out.Ready || out.Exit != 75 || len(out.Relays) != 1 {
		t.Fatalf("ready %v exit %d relays %d, want false 75 1", out.Ready, out.Exit, len(out.Relays))
	}
	rel := out.Relays[0]
	if rel.Relay != "smtps://"+relay.Addr() || rel.Connected != relay.Addr() || (rel.Greeting == nil || rel.Greeting.Code != 220) || len(rel.Extensions) == 0 {
		t.Errorf("relay %+v", rel)
	}
	if tl := rel.TLS; tl == nil || tl.Version != "TLS 1.3" || tl.STARTTLS || tl.Enforced || tl.Verified ||
		!strings.Contains(tl.VerifyError, "unknown authority") || tl.Subject == "" || tl.NotAfter.Before(time.Now()) {
		t.Errorf("tls %+v", rel.TLS)
	}
	if len(rel.Rcpt) != 2 || !rel.Rcpt[0].OK || rel.Rcpt[1].OK || rel.Rcpt[1].Reply.String() != "450 4.2.1 Mailbox busy" {
		t.Errorf("rcpt %+v", rel.Rcpt)
	}
	if e := rel.Error; e == nil || e.Stage != "rcpt" || e.Reply == nil || e.Reply.Code != 450 || e.Reply.Enhanced != "4.2.1" {
		t.Errorf("error %+v", rel.Error)
	}
	noData(t, relay)
}
