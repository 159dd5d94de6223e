package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// importRun runs relayq import-postfix in-process on a postconf -n text.
func importRun(t *testing.T, postconf string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := cmdEnv{Stdin: strings.NewReader(postconf), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	code := run(append([]string{"relayq", "import-postfix", "--postconf", "-"}, args...), env)
	return code, stdout.String(), stderr.String()
}

// TestImportPostfix: sample postconf -n outputs of null clients, each with
// the config lines and the "not translated" notes it must give.
func TestImportPostfix(t *testing.T) {
	dir := t.TempDir()
	sasl := filepath.Join(dir, "sasl_passwd")
	os.WriteFile(sasl, []byte("# relay login\n[smtp.example.com]:587 relay@example.com:s3cr:et\nother.example.net u:p\n"), 0o600)
	mailname := filepath.Join(dir, "mailname")
	os.WriteFile(mailname, []byte("example.org\n"), 0o644)
	empty := filepath.Join(dir, "spool") // no queue directories
	for _, tc := range []struct {
		name, postconf string
		want, notes    []string
		noNotes        []string
	}{{
		name: "debian null client with sasl on 587",
		postconf: `alias_database = hash:/etc/aliases
alias_maps = hash:/etc/aliases
append_dot_mydomain = no
biff = no
compatibility_level = 3.6
inet_interfaces = loopback-only
mydestination =
myhostname = web1.example.org
myorigin = /MAILNAME
queue_directory = /SPOOL
relayhost = [smtp.example.com]:587
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = hash:/SASL
smtp_sasl_security_options = noanonymous
smtp_tls_security_level = encrypt
transport_maps = hash:/etc/postfix/transport
smtp_generic_maps = hash:/etc/postfix/generic
`,
		want: []string{`url = "smtp://smtp.example.com:587"`, `user = "relay@example.com"`, `pass_file = "/etc/relayq/relay.pass"`,
			`require_tls = true`, `hostname = "web1.example.org"`, `domain = "example.org"`, `aliases_file = "/etc/aliases"`},
		notes: []string{"transport_maps = hash:/etc/postfix/transport (relayq: none", "smtp_generic_maps = hash:/etc/postfix/generic (relayq: [rewrite] envelope_from",
			"inet_interfaces = loopback-only (relayq: [submission] listen", "smtp_tls_security_level = encrypt: relayq also verifies"},
		noNotes: []string{"biff", "mydestination", "MX"},
	}, {
		name:     "smtps by port, unbracketed host",
		postconf: "relayhost = mail.example.net:465\nsmtp_tls_security_level = none\nqueue_directory = /SPOOL\nmaximal_queue_lifetime = 2d\ndelay_warning_time = 4h\nmessage_size_limit = 10240000\n",
		want:     []string{`url = "smtps://mail.example.net:465"`, `max_lifetime = "48h"`, `delay_warning_after = "4h"`, `max_message_size = "10240000B"`},
		notes:    []string{"Postfix looks this name up by MX", "none: the relay's port speaks TLS"},
	}, {
		name:     "tls none",
		postconf: "relayhost = [10.0.0.1]\nsmtp_tls_security_level = none\nqueue_directory = /SPOOL\n",
		want:     []string{`url = "smtp://10.0.0.1:25"`, `ignore_tls = true`},
	}, {
		name:     "wrapper mode, default port, sasl entry by host",
		postconf: "relayhost = [other.example.net]\nsmtp_tls_wrappermode = yes\nsmtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = texthash:/SASL\nqueue_directory = /SPOOL\n",
		want:     []string{`url = "smtps://other.example.net:25"`, `user = "u"`},
	}, {
		name:     "no relayhost",
		postconf: "myhostname = host.example.com\nqueue_directory = /SPOOL\n",
		want:     []string{`hostname = "host.example.com"`},
		notes:    []string{"relayhost is empty"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			pc := strings.NewReplacer("/SASL", sasl, "/MAILNAME", mailname, "/SPOOL", empty).Replace(tc.postconf)
			code, out, errOut := importRun(t, pc, "--dry-run")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w+"\n") {
					t.Errorf("config lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.notes {
				if !strings.Contains(errOut, n) {
					t.Errorf("report lacks %q:\n%s", n, errOut)
				}
			}
			for _, n := range tc.noNotes {
				if strings.Contains(errOut, n) {
					t.Errorf("report mentions %q:\n%s", n, errOut)
				}
			}
			if strings.Contains(out, "s3cr") || strings.Contains(errOut, "s3cr") {
				t.Errorf("the password was printed")
			}
		})
	}
}

// TestImportPostfixWrites: without --dry-run the config (0644, the old one
// kept as .bak) and the password file (0600, the password after the first
// colon, colons kept) are written; with --dry-run nothing is.
func TestImportPostfixWrites(t *testing.T) {
	dir := t.TempDir()
	sasl := filepath.Join(dir, "sasl_passwd")
	os.WriteFile(sasl, []byte("[smtp.example.com]:587 relay@example.com:s3cr:et\n"), 0o600)
	out, pass := filepath.Join(dir, "etc", "config.toml"), filepath.Join(dir, "etc", "relay.pass")
	pc := "relayhost = [smtp.example.com]:587\nsmtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = hash:" + sasl + "\nqueue_directory = " + dir + "\n"
	if code, _, errOut := importRun(t, pc, "--dry-run", "--output", out, "--pass-file", pass); code != exitOK {
		t.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Dir(out)); !os.IsNotExist(err) {
		t.Fatalf("--dry-run wrote something: %v", err)
	}
	os.MkdirAll(filepath.Dir(out), 0o755)
	os.WriteFile(out, []byte("# old\n"), 0o644)
	if code, _, errOut := importRun(t, pc, "--output", out, "--pass-file", pass); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for path, want := range map[string]os.FileMode{out: 0o644, pass: 0o600, out + ".bak": 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v, want %v", path, err, fi.Mode().Perm(), want)
		}
	}
	if data, _ := os.ReadFile(pass); string(data) != "s3cr:et\n" {
		t.Errorf("password file holds %q", data)
	}
	cfgData, _ := os.ReadFile(out)
	if !strings.Contains(string(cfgData), `pass_file = "`+pass+`"`) {
		t.Errorf("config does not name the pass file:\n%s", cfgData)
	}
	var stdout, stderr bytes.Buffer
	env := cmdEnv{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	if code := run([]string{"relayq", "-c", out, "verify", "--help"}, env); code != exitOK {
		t.Errorf("the written config: %s", stderr.String())
	}
}

// TestImportPostfixQueueReport: messages left in Postfix's queue
// directories are counted by queue, and said to be left for Postfix.
func TestImportPostfixQueueReport(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"deferred/A/A1B2C3", "deferred/F/F00BA4", "hold/DEADBE"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o700)
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600)
	}
	_, _, errOut := importRun(t, "relayhost = [r.example]:25\nqueue_directory = "+dir+"\n", "--dry-run")
	if !strings.Contains(errOut, "still holds 3 message(s): deferred 2, hold 1") || !strings.Contains(errOut, "relayq import-postfix --queue submits them") {
		t.Errorf("report:\n%s", errOut)
	}
}

func TestPostfixDuration(t *testing.T) {
	for in, want := range map[string]string{"5d": "120h", "5": "120h", "4h": "4h", "90m": "5400s", "1w": "168h", "3600s": "1h"} {
		if got, ok := postfixDuration(in); !ok || got != want {
			t.Errorf("postfixDuration(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := postfixDuration("soon"); ok {
		t.Error("postfixDuration(soon) ok")
	}
}
