package tests

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestReloadSIGHUP: SMTP on the unix socket → relayq → relay A (STARTTLS,
// AUTH with the password in pass_file). The configuration is rewritten to
// relay B, with B's certificate and a new password in the same pass_file,
// and relayq gets SIGHUP: the next message goes to B, logged in with the
// new password, and so does the message that A kept deferring; the daemon
// is the same process throughout. A broken file on the next SIGHUP is
// refused with an ERROR line, and mail still goes to B.
func TestReloadSIGHUP(t *testing.T) {
	const user = "relayq"
	a := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{user: "pass-A"}, Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"later@example.net": smtptest.Times(100000, smtptest.Reply(451, "4.3.0 Not now"))},
	}})
	b := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{user: "pass-B"}})
	d := newDaemon(t, a, func(s settings) { s.set("relay.auth", "user", tomlString(user)) })
	d.settings.set("relay.auth", "pass_file", tomlString(writeSecret(t, d, "relay-pass", "pass-A")))
	trustRelay(t, d, a)
	d.writeConfig()
	d.start()
	pid := d.running().cmd.Process.Pid
	hup := func() {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	const from = "reload@example.org"
	d.submit(t, from, []string{"first@example.net"}, newMessage(1, from, []string{"first@example.net"}, 3))
	if got := a.WaitMessages(t, 1, 15*time.Second); got[0].AuthUser != user {
		t.Fatalf("relay A got the first message as %q, want %q", got[0].AuthUser, user)
	}
	waiting := d.submit(t, from, []string{"later@example.net"}, newMessage(2, from, []string{"later@example.net"}, 3))
	waitDeferred(t, d, waiting)

	writeSecret(t, d, "relay-pass", "pass-B")
	d.settings.set("relay", "url", tomlString(relayURL(b, false)))
	trustRelay(t, d, b)
	d.writeConfig()
	hup()
	waitFor(t, 15*time.Second, "the reload to be logged", func() bool { return len(d.logRecords("configuration reloaded")) == 1 })

	d.submit(t, from, []string{"second@example.net"}, newMessage(3, from, []string{"second@example.net"}, 3))
	var to []string
	for _, m := range b.WaitMessages(t, 2, 20*time.Second) {
		if m.AuthUser != user || !m.TLS {
			t.Errorf("relay B got %v as %q over TLS %v; want as %s over TLS", m.To, m.AuthUser, m.TLS, user)
		}
		to = append(to, m.To...)
	}
	slices.Sort(to)
	if want := []string{"later@example.net", "second@example.net"}; !slices.Equal(to, want) {
		t.Errorf("relay B got mail for %v, want %v (the deferred message and the new one)", to, want)
	}
	if n := len(a.Messages()); n != 1 {
		t.Errorf("relay A got %d messages, want only the first", n)
	}

	if err := os.WriteFile(d.config, []byte("[relay\nurl = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	waitFor(t, 15*time.Second, "the refusal to be logged", func() bool {
		return len(d.logRecords("reload refused; the configuration in force stays")) == 1
	})
	if r := d.logRecords("reload refused; the configuration in force stays")[0]; r["level"] != "ERROR" || !strings.Contains(r["err"], "relayq.toml") {
		t.Errorf("refusal logged as %v; want an ERROR naming the file", r)
	}
	// A file caught empty (truncated by whatever writes it, not yet
	// written) is refused too, rather than taken as all defaults (another
	// relay, no [limits]).
	if err := os.WriteFile(d.config, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	waitFor(t, 15*time.Second, "the second refusal to be logged", func() bool {
		return len(d.logRecords("reload refused; the configuration in force stays")) == 2
	})
	if r := d.logRecords("reload refused; the configuration in force stays")[1]; !strings.Contains(r["err"], "is empty") {
		t.Errorf("reload of an empty file logged as %v; want a refusal saying it is empty", r)
	}
	d.submit(t, from, []string{"third@example.net"}, newMessage(4, from, []string{"third@example.net"}, 3))
	b.WaitMessages(t, 3, 20*time.Second)
	if p := d.running(); p == nil || p.cmd.Process.Pid != pid {
		t.Fatalf("relayq serve is not the process it was before the reloads")
	}
	if n := len(d.logRecords("relayq starting")); n != 1 {
		t.Errorf("relayq started %d times, want once", n)
	}
}

// TestReloadCommand: `relayq reload` asks the daemon over the control
// socket and reports the outcome: exit 0 when the new file is in force (a
// setting that needs a restart is named in a warning), 78 with the
// daemon's error when it was refused (a pass_file that is not there, which
// only the daemon reads), the daemon running on.
func TestReloadCommand(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)

	d.settings.set("submission", "max_recipients", "10")
	d.settings.set("retry", "max_interval", `"2s"`)
	d.writeConfig()
	if res := runCmd(relayqBin, nil, "reload", "-c", d.config); res.code != 0 || !strings.Contains(res.stdout, "in force") {
		t.Errorf("relayq reload of a good file: %v; want exit 0", res)
	}
	const restartOnly = "reload: this setting changes only when relayq restarts; the old value stays in force"
	warned := false
	for _, r := range d.logRecords(restartOnly) {
		if r["key"] != "submission.max_recipients" {
			t.Errorf("reload warned about %s, which did not change or needs no restart", r["key"])
		}
		warned = true
	}
	if !warned {
		t.Errorf("no warning that submission.max_recipients needs a restart")
	}

	d.settings.set("relay.auth", "user", `"relayq"`)
	d.settings.set("relay.auth", "pass_file", tomlString(d.dir+"/no-such-file"))
	d.writeConfig()
	res := runCmd(relayqBin, nil, "reload", "-c", d.config)
	if res.code != 78 || !strings.Contains(res.stderr, "relay.auth.pass_file") {
		t.Errorf("relayq reload of a file naming a missing pass_file: %v; want exit 78 and the error", res)
	}
	if len(d.logRecords("reload refused; the configuration in force stays")) != 1 {
		t.Errorf("the daemon did not log the refusal")
	}
	from, to := "cmd@example.org", []string{"rcpt@example.net"}
	d.submit(t, from, to, newMessage(5, from, to, 3))
	relay.WaitMessages(t, 1, 15*time.Second)
}
