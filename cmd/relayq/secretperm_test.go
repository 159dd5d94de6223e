package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relayq/config"
)

func TestLooseSecretFile(t *testing.T) {
	const daemonGID = 120
	tests := []struct {
		mode      os.FileMode
		fileGID   int
		wantLoose bool
	}{
		{0o600, 0, false},
		{0o400, 4242, false},
		{0o640, 0, false},         // root's group
		{0o640, daemonGID, false}, // the daemon's group
		{0o640, 4242, true},       // some other group
		{0o604, 0, true},          // world-readable
		{0o644, daemonGID, true},
		{0o660, 4242, true},
		{0o620, 4242, false}, // group may write but not read: odd, not a leak
	}
	for _, tt := range tests {
		if got := looseSecretFile(tt.mode, tt.fileGID, daemonGID); got != tt.wantLoose {
			t.Errorf("looseSecretFile(%04o, gid %d) = %v, want %v", tt.mode, tt.fileGID, got, tt.wantLoose)
		}
	}
}

func TestSecretsInConfig(t *testing.T) {
	tests := []struct {
		name string
		r    config.RelayConfig
		want string
	}{
		{"none", config.RelayConfig{}, ""},
		{"pass", config.RelayConfig{Auth: config.AuthConfig{Pass: "x"}}, "relay.auth.pass"},
		{"pass_file", config.RelayConfig{Auth: config.AuthConfig{Pass: "x", PassFile: "/etc/relayq/pass"}}, ""},
		{"pass_env", config.RelayConfig{Auth: config.AuthConfig{Pass: "x", PassEnv: "RELAY_PASS"}}, ""},
		{"oauth2", config.RelayConfig{Auth: config.AuthConfig{AccessToken: "a", ClientSecret: "c", RefreshToken: "r", RefreshTokenFile: "/f"}},
			"relay.auth.access_token,relay.auth.client_secret"},
		{"proxy password", config.RelayConfig{Proxy: "socks5://u:p@127.0.0.1:1080"}, "relay.proxy"},
		{"proxy user only", config.RelayConfig{Proxy: "socks5://u@127.0.0.1:1080"}, ""},
	}
	for _, tt := range tests {
		if got := strings.Join(secretsInConfig(tt.r), ","); got != tt.want {
			t.Errorf("%s: secretsInConfig = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestWarnLooseSecrets: the warning names the file and the chmod that
// fixes it, for the config file holding a password and for a pass_file;
// tight files give no warning.
func TestWarnLooseSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		mode     os.FileMode
		auth     func(path string) config.AuthConfig
		wantWarn bool
	}{
		{"config 0644 with pass", 0o644, func(string) config.AuthConfig { return config.AuthConfig{User: "u", Pass: "p"} }, true},
		{"config 0600 with pass", 0o600, func(string) config.AuthConfig { return config.AuthConfig{User: "u", Pass: "p"} }, false},
		{"config 0644 without secrets", 0o644, func(string) config.AuthConfig { return config.AuthConfig{} }, false},
		{"pass_file 0644", 0o644, func(p string) config.AuthConfig { return config.AuthConfig{User: "u", Pass: "p", PassFile: p} }, true},
		{"pass_file 0600", 0o600, func(p string) config.AuthConfig { return config.AuthConfig{User: "u", Pass: "p", PassFile: p} }, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			configFile := write("config.toml", 0o644)
			secret := write("secret", tt.mode)
			if strings.HasPrefix(tt.name, "config") {
				configFile = write("config.toml", tt.mode)
			}
			cfg := &config.Config{Relay: config.RelayConfig{Auth: tt.auth(secret)}}
			var buf bytes.Buffer
			warnLooseSecrets(cfg, configFile, slog.New(slog.NewTextHandler(&buf, nil)))
			out := buf.String()
			loose := configFile
			if strings.HasPrefix(tt.name, "pass_file") {
				loose = secret
			}
			gotWarn := strings.Contains(out, "level=WARN")
			if gotWarn != tt.wantWarn {
				t.Fatalf("case %d: warned %v, want %v; log: %s", i, gotWarn, tt.wantWarn, out)
			}
			if tt.wantWarn && (!strings.Contains(out, "file="+loose) || !strings.Contains(out, "chmod 600 "+loose)) {
				t.Errorf("warning %q does not name %s and the chmod that fixes it", out, loose)
			}
			if strings.Contains(out, "secret\n") || strings.Contains(out, `"p"`) {
				t.Errorf("warning shows a secret: %s", out)
			}
		})
	}
	warnLooseSecrets(config.Default(), "embedded default", slog.New(slog.DiscardHandler)) // no file: nothing to do
}

// TestWarnLooseSecretsOfEveryRelay: a [[relays]] entry's pass_file that
// others may read is warned about too, named by the relay's id.
func TestWarnLooseSecretsOfEveryRelay(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "b.pass")
	if err := os.WriteFile(secret, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{RelayTable: true, Relays: []config.NamedRelay{
		{ID: "b", RelayConfig: config.RelayConfig{Auth: config.AuthConfig{User: "u", Pass: "p", PassFile: secret}}},
	}}
	var buf bytes.Buffer
	warnLooseSecrets(cfg, filepath.Join(dir, "config.toml"), slog.New(slog.NewTextHandler(&buf, nil)))
	if out := buf.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "relays[b].auth.pass_file") || !strings.Contains(out, secret) {
		t.Errorf("log: %s\nwant a warning naming relays[b].auth.pass_file and %s", out, secret)
	}
}
