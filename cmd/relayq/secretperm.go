package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"syscall"

	"relayq/config"
)

// warnLooseSecrets logs a warning for each file holding a relay secret that
// users other than the daemon's can read: the config file when a secret is
// written in it (pass, access_token, client_secret, refresh_token, or a
// password in the url or proxy), and the _file secrets and the TLS key. A
// file is loose when it is readable by others, or by a group other than
// root's and the daemon's. source is the config file Find used ("embedded
// default" holds no secret). Only the warning is given: the daemon starts.
func warnLooseSecrets(cfg *config.Config, source string, log *slog.Logger) {
	gid := os.Getgid()
	var inConfig []string
	for _, r := range cfg.RelayList() {
		// [relay]'s keys as before; a [[relays]] entry's as relays[ID].key.
		rename := func(key string) string { return key }
		if r.ID != config.DefaultRelayID || len(cfg.Relays) > 0 && !cfg.RelayTable {
			rename = func(key string) string { return "relays[" + r.ID + "]" + strings.TrimPrefix(key, "relay") }
		}
		for _, k := range secretsInConfig(r.RelayConfig) {
			inConfig = append(inConfig, rename(k))
		}
		a := r.Auth
		for _, f := range []struct{ key, path string }{
			{"relay.auth.pass_file", a.PassFile},
			{"relay.auth.access_token_file", a.AccessTokenFile},
			{"relay.auth.client_secret_file", a.ClientSecretFile},
			{"relay.auth.refresh_token_file", a.RefreshTokenFile},
			{"relay.tls.key_file", r.TLS.KeyFile},
		} {
			if f.path != "" {
				warnLooseFile(log, f.path, rename(f.key), gid, "")
			}
		}
	}
	if len(inConfig) > 0 {
		warnLooseFile(log, source, strings.Join(inConfig, ", "), gid,
			"or move the secrets to pass_file / client_secret_file / refresh_token_file (mode 600) and keep the config readable for sendmail")
	}
}

// secretsInConfig names the secrets written in the config file itself
// rather than read from a _file or an environment variable.
func secretsInConfig(r config.RelayConfig) []string {
	var keys []string
	a := r.Auth
	if a.Pass != "" && a.PassFile == "" && a.PassEnv == "" {
		keys = append(keys, "relay.auth.pass")
	}
	if a.AccessToken != "" && a.AccessTokenFile == "" {
		keys = append(keys, "relay.auth.access_token")
	}
	if a.ClientSecret != "" && a.ClientSecretFile == "" {
		keys = append(keys, "relay.auth.client_secret")
	}
	if a.RefreshToken != "" && a.RefreshTokenFile == "" {
		keys = append(keys, "relay.auth.refresh_token")
	}
	if hasPassword(r.Proxy) {
		keys = append(keys, "relay.proxy")
	}
	return keys
}

func hasPassword(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

// warnLooseFile logs the warning for path if it is loose; what names the
// secrets it holds and also suggests another fix.
func warnLooseFile(log *slog.Logger, path, what string, daemonGID int, also string) {
	fi, err := os.Stat(path)
	if err != nil {
		return // not a file (embedded default), or already reported by loading
	}
	fileGID := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fileGID = int(st.Gid)
	}
	if !looseSecretFile(fi.Mode(), fileGID, daemonGID) {
		return
	}
	fix := fmt.Sprintf("chmod 600 %s (or chmod 640 with a group only root and relayq are in)", path)
	if also != "" {
		fix += ", " + also
	}
	log.Warn("a file holding relay secrets is readable by other users", "file", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "holds", what, "fix", fix)
}

// looseSecretFile reports whether a file with mode and group fileGID can be
// read by users other than its owner, root and the daemon's group.
func looseSecretFile(mode fs.FileMode, fileGID, daemonGID int) bool {
	if mode&0o004 != 0 {
		return true
	}
	return mode&0o040 != 0 && fileGID != 0 && fileGID != daemonGID
}
