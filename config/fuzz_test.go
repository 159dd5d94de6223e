package config

import (
	"bytes"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: whatever the bytes, parsing never panics, and a config that is
// refused is refused with *Error values that each name the file and a key
// or a line, as an operator needs to fix it. A config that is taken logs
// without its password.
//
// It runs the same loader.parse as Parse, with a loader that sees nothing
// of the machine (testLoader), so that results do not depend on who runs it.
func FuzzParse(f *testing.F) {
	f.Add(exampleConfig)
	f.Add(embeddedConfig)
	files, _ := filepath.Glob("../tests/testdata/badconfig/*.toml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"",
		"[relay]\nurl = \"smtp://user:p%40ss@relay.example:587?max_connections=2&tls.require_tls=true\"\n",
		"[relay]\nurl = \"lmtp+unix:///run/dovecot/lmtp\"\n",
		"[relay]\nhost = \"relay.example\"\nport = 0\n[relay.auth]\nuser = \"u\"\npass = \"sekrit-pass\"\n",
		"[submission]\nmax_message_size = \"10 PB\"\nsocket_mode = \"0999\"\n",
		"[retry]\ninitial_interval = \"-1s\"\nmultiplier = 0.5\n",
		"[[relay]]\n",
		"relay = 5\n",
		"[relay.tls]\nmin_version = 1.2\n",
		"a = \"\xff\"\n",
		"[relay]\nurl = \"smtp://[::1\"\n",
	} {
		f.Add([]byte(s))
	}
	home := f.TempDir()
	l := loader{
		getenv:   envMap{"HOME": home}.get,
		euid:     1000,
		stateDir: filepath.Join(home, "absent"),
		hostname: func() (string, error) { return "host.example", nil },
		homeDir:  func() string { return "" },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := l.parse(data, "fuzz.toml")
		if err != nil {
			checkConfigError(t, data, err)
			return
		}
		pass := cfg.Relay.Auth.Pass
		line := logLine(cfg)
		if len(pass) < 4 || !strings.Contains(line, pass) {
			return
		}
		// The password may also be an ordinary part of the line ("cret"
		// of client_secret): it leaks only if the line shows it more often
		// than the line of the same config with another password.
		// That other config comes from the same file with the password
		// replaced, or, where the password is also other text of the file
		// (a password "mtp:" in "smtp://u:mtp:@host"), from this config
		// with its password fields set to another.
		const other = "Qz7-other-password-7zQ"
		sameWithoutIt := func(cfg2 *Config) bool {
			line2 := logLine(cfg2)
			return !strings.Contains(line2, other) && strings.Count(line, pass) <= strings.Count(line2, pass)
		}
		if alt := bytes.ReplaceAll(data, []byte(pass), []byte(other)); !bytes.Equal(alt, data) {
			if cfg2, err := l.parse(alt, "fuzz.toml"); err == nil && cfg2.Relay.Auth.Pass == other && sameWithoutIt(cfg2) {
				return
			}
		}
		if cfg2, ok := withRelayPassword(cfg, other); ok && sameWithoutIt(cfg2) {
			return
		}
		t.Fatalf("the password %q is in the log line %q", pass, line)
	})
}

// withRelayPassword is a copy of cfg whose relay password, in
// relay.auth.pass and in the relay url's user info, is pass instead; ok is
// false when the url holds a password it cannot replace.
func withRelayPassword(cfg *Config, pass string) (c *Config, ok bool) {
	copied := *cfg
	copied.Relay.Auth.Pass = pass
	if copied.Relay.URL != "" {
		u, err := url.Parse(copied.Relay.URL)
		if err != nil {
			return nil, false
		}
		if _, set := u.User.Password(); set {
			u.User = url.UserPassword(u.User.Username(), pass)
			copied.Relay.URL = u.String()
		}
	}
	return &copied, true
}

// logLine is the start-up log line of cfg's settings.
func logLine(cfg *Config) string {
	var log bytes.Buffer
	slog.New(slog.NewTextHandler(&log, nil)).Info("config", "settings", cfg)
	return log.String()
}

// checkConfigError checks that every problem in err is an *Error that
// names the file and either a key or a line.
func checkConfigError(t *testing.T, data []byte, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("config %q: error %q (%T) is not a *config.Error", data, e, e)
		}
		if ce.File != "fuzz.toml" || ce.Key == "" && ce.Line == 0 {
			t.Fatalf("config %q: error %q names no key and no line", data, e)
		}
		if !strings.HasPrefix(e.Error(), "fuzz.toml") {
			t.Fatalf("config %q: error %q does not start with the file name", data, e)
		}
	}
}
