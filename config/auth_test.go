package config

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

const tokenURL = "token_url = \"https://oauth2.example.com/token\"\n"

// TestAuthRejected: inconsistent [relay.auth] combinations, each with the
// key and line at fault.
func TestAuthRejected(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n")
	rt := writeFile(t, dir, "rt", "refresh\n")
	oauth := "[relay.auth]\ntype = \"oauth2\"\nuser = \"u@example.com\"\n"
	refresh := oauth + "refresh_token = \"r\"\nclient_id = \"c\"\n"
	tests := []struct{ name, text, want string }{
		{"bad type", "[relay.auth]\ntype = \"xoauth\"\n", "test.toml:2: relay.auth.type: \"xoauth\" is not one of login, oauth2"},
		{"bad method", "[relay.auth]\nuser = \"u\"\npass = \"p\"\nmethod = \"SCRAM-SHA-1\"\n", "test.toml:4: relay.auth.method: \"SCRAM-SHA-1\" is not one of PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER"},
		{"token method with type login", "[relay.auth]\nuser = \"u\"\npass = \"p\"\nmethod = \"xoauth2\"\n", "test.toml:4: relay.auth.method: XOAUTH2 needs relay.auth.type = \"oauth2\", but the type is \"login\""},
		{"password method with type oauth2", refresh + tokenURL + "method = \"plain\"\n", "test.toml:7: relay.auth.method: PLAIN needs relay.auth.type = \"login\", but the type is \"oauth2\""},
		{"method without user", "[relay.auth]\nmethod = \"PLAIN\"\n", "test.toml:2: relay.auth.method: is set but relay.auth.user is not"},
		{"pass and pass_env", "[relay.auth]\nuser = \"u\"\npass = \"p\"\npass_env = \"P\"\n", "test.toml:4: relay.auth.pass_env: is set together with relay.auth.pass"},
		{"pass_file and pass_env", "[relay.auth]\nuser = \"u\"\npass_env = \"P\"\npass_file = \"" + empty + "\"\n", "test.toml:3: relay.auth.pass_env: is set together with relay.auth.pass_file"},
		{"pass_env unset", "[relay.auth]\nuser = \"u\"\npass_env = \"RELAYQ_NO_SUCH_VAR\"\n", "test.toml:3: relay.auth.pass_env: environment variable RELAYQ_NO_SUCH_VAR is not set or empty"},
		{"pass_env empty", "[relay.auth]\nuser = \"u\"\npass_env = \"EMPTY\"\n", "test.toml:3: relay.auth.pass_env: environment variable EMPTY is not set or empty"},
		{"pass_env no name", "[relay.auth]\nuser = \"u\"\npass_env = \"\"\n", "test.toml:3: relay.auth.pass_env: \"\" is not an environment variable name"},
		{"pass_env without user", "[relay.auth]\npass_env = \"PW\"\n", "test.toml:2: relay.auth.pass_env: is set but relay.auth.user is not"},
		{"oauth2 key with type login", "[relay.auth]\nuser = \"u\"\npass = \"p\"\nrefresh_token = \"r\"\n", "test.toml:4: relay.auth.refresh_token: is an OAuth2 setting, but relay.auth.type is \"login\""},
		{"oauth2 without user", "[relay.auth]\ntype = \"oauth2\"\naccess_token = \"t\"\n", "test.toml:2: relay.auth.type: \"oauth2\" needs relay.auth.user"},
		{"oauth2 without token", oauth, "test.toml:2: relay.auth.type: \"oauth2\" needs relay.auth.access_token (or access_token_file), or relay.auth.refresh_token"},
		{"oauth2 with pass", oauth + "access_token = \"t\"\npass = \"p\"\n", "test.toml:5: relay.auth.pass: is a password, but relay.auth.type is \"oauth2\""},
		{"oauth2 with url password", "[relay]\nurl = \"smtp://u:p@h.example\"\n[relay.auth]\ntype = \"oauth2\"\naccess_token = \"t\"\n", "test.toml:2: relay.url: is a password, but relay.auth.type is \"oauth2\""},
		{"access and refresh token", oauth + "access_token = \"t\"\nrefresh_token = \"r\"\n", "test.toml:4: relay.auth.access_token: is set together with relay.auth.refresh_token: give a static access token or a refresh token, not both"},
		{"access_token and its file", oauth + "access_token = \"t\"\naccess_token_file = \"" + rt + "\"\n", "test.toml:5: relay.auth.access_token_file: is set together with relay.auth.access_token"},
		{"client_id with static token", oauth + "access_token = \"t\"\nclient_id = \"c\"\n", "test.toml:5: relay.auth.client_id: is only used with relay.auth.refresh_token"},
		{"refresh without client_id", oauth + "refresh_token = \"r\"\n" + tokenURL, "test.toml:4: relay.auth.refresh_token: needs relay.auth.client_id"},
		{"refresh without token_url", refresh, "test.toml:4: relay.auth.refresh_token: needs relay.auth.token_url"},
		{"http token_url", refresh + "token_url = \"http://oauth2.example.com/token\"\n", "test.toml:6: relay.auth.token_url: is http://, which would send the refresh token and client secret in clear"},
		{"relative token_url", refresh + "token_url = \"/token\"\n", "test.toml:6: relay.auth.token_url: is not an absolute url"},
		{"token_url with credentials", refresh + "token_url = \"https://a:b@oauth2.example.com/token\"\n", "test.toml:6: relay.auth.token_url: must not hold credentials"},
		{"client_secret and its file", refresh + tokenURL + "client_secret = \"s\"\nclient_secret_file = \"" + rt + "\"\n", "test.toml:8: relay.auth.client_secret_file: is set together with relay.auth.client_secret"},
		{"empty refresh_token_file", oauth + "refresh_token_file = \"" + empty + "\"\nclient_id = \"c\"\n" + tokenURL, "test.toml:4: relay.auth.refresh_token_file: " + empty + " is empty"},
		{"relative access_token_file", oauth + "access_token_file = \"token\"\n", "test.toml:4: relay.auth.access_token_file: \"token\" is not an absolute path"},
		{"missing client_secret_file", refresh + tokenURL + "client_secret_file = \"/nonexistent/s\"\n", "test.toml:7: relay.auth.client_secret_file: open /nonexistent/s: no such file or directory"},
		{"token in the url", "[relay]\nurl = \"smtp://u@h.example?auth.type=oauth2&auth.access_token=t\"\n", "test.toml:2: relay.url: query option \"auth.access_token\" is a secret"},
		{"token with ignore_tls", oauth + "access_token = \"t\"\n[relay.tls]\nignore_tls = true\n", "test.toml:6: relay.tls.ignore_tls: would send the access token of relay.auth.user in clear"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoader(t)
			l.getenv = envMap{"EMPTY": "", "PW": "pw"}.get
			_, err := l.parse([]byte(tt.text), "test.toml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.text)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("config:\n%s\nerror:\n  %v\nwant it to contain:\n  %s", tt.text, err, tt.want)
			}
		})
	}
}

// TestAuthLoaded: what each accepted [relay.auth] loads into AuthConfig.
func TestAuthLoaded(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "secret", "file-secret\n")
	oauth := "[relay.auth]\ntype = \"OAuth2\"\nuser = \"u@example.com\"\n"
	tests := []struct {
		name, text string
		want       AuthConfig // compared on the fields below
	}{
		{"defaults", "", AuthConfig{Type: AuthLogin}},
		{"pass_env", "[relay.auth]\nuser = \"u\"\npass_env = \"RELAY_PW\"\nmethod = \"cram-md5\"\n",
			AuthConfig{Type: AuthLogin, Method: "CRAM-MD5", User: "u", Pass: "env-secret"}},
		{"static token file", oauth + "access_token_file = \"" + secretFile + "\"\nmethod = \"oauthbearer\"\n",
			AuthConfig{Type: AuthOAuth2, Method: "OAUTHBEARER", User: "u@example.com", AccessToken: "file-secret"}},
		{"refresh token", oauth + "refresh_token_file = \"" + secretFile + "\"\nclient_id = \"c\"\nclient_secret = \"s\"\n" +
			tokenURL + "scopes = [\"https://outlook.office.com/SMTP.Send\", \"offline_access\"]\n",
			AuthConfig{Type: AuthOAuth2, User: "u@example.com", RefreshToken: "file-secret", ClientID: "c", ClientSecret: "s",
				TokenURL: "https://oauth2.example.com/token", Scopes: []string{"https://outlook.office.com/SMTP.Send", "offline_access"}}},
		{"public client on a loopback endpoint", oauth + "refresh_token = \"r\"\nclient_id = \"c\"\ntoken_url = \"http://127.0.0.1:8080/token\"\n",
			AuthConfig{Type: AuthOAuth2, User: "u@example.com", RefreshToken: "r", ClientID: "c", TokenURL: "http://127.0.0.1:8080/token"}},
		{"oauth2 in the url", "[relay]\nurl = \"smtps://u%40example.com@smtp.example.com?auth.type=oauth2&auth.access_token_file=" + secretFile + "\"\n",
			AuthConfig{Type: AuthOAuth2, User: "u@example.com", AccessToken: "file-secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoader(t)
			l.getenv = envMap{"RELAY_PW": "env-secret"}.get
			a := mustParse(t, l, tt.text).Relay.Auth
			w := tt.want
			if a.Type != w.Type || a.Method != w.Method || a.User != w.User || a.Pass != w.Pass ||
				a.AccessToken != w.AccessToken || a.RefreshToken != w.RefreshToken || a.ClientID != w.ClientID ||
				a.ClientSecret != w.ClientSecret || a.TokenURL != w.TokenURL || !slices.Equal(a.Scopes, w.Scopes) {
				t.Errorf("loaded %+v\nwant   %+v", a, w)
			}
		})
	}
}

// TestAuthSecretsRedacted: the effective config logged at start shows no
// OAuth2 secret nor a password from pass_env.
func TestAuthSecretsRedacted(t *testing.T) {
	dir := t.TempDir()
	rt := writeFile(t, dir, "rt", "file-refresh-s3cret\n")
	l := testLoader(t)
	l.getenv = envMap{"PW": "env-s3cret"}.get
	texts := []string{
		"[relay.auth]\ntype = \"oauth2\"\nuser = \"u\"\nrefresh_token_file = \"" + rt + "\"\nclient_id = \"c\"\n" +
			"client_secret = \"client-s3cret\"\n" + tokenURL,
		"[relay.auth]\ntype = \"oauth2\"\nuser = \"u\"\naccess_token = \"access-s3cret\"\n",
		"[relay.auth]\nuser = \"u\"\npass_env = \"PW\"\n",
	}
	for _, text := range texts {
		cfg := mustParse(t, l, text)
		var b bytes.Buffer
		slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", cfg)
		if strings.Contains(b.String(), "s3cret") {
			t.Errorf("log shows a secret:\n%s", b.String())
		}
		if !strings.Contains(b.String(), redacted) {
			t.Errorf("log does not show the secret as %s:\n%s", redacted, b.String())
		}
	}
}

// TestAuthClientSkipsSecrets: `relayq sendmail` loads a config whose
// secrets (files, pass_env) only the daemon has.
func TestAuthClientSkipsSecrets(t *testing.T) {
	for _, text := range []string{
		"[relay.auth]\nuser = \"u\"\npass_env = \"RELAYQ_UNSET\"\n",
		"[relay.auth]\ntype = \"oauth2\"\nuser = \"u\"\nrefresh_token_file = \"/nonexistent/rt\"\nclient_id = \"c\"\n" +
			"client_secret_file = \"/nonexistent/cs\"\n" + tokenURL,
	} {
		l := testLoader(t)
		if _, err := l.parse([]byte(text), "test.toml"); err == nil {
			t.Errorf("the daemon's loader accepted missing secrets:\n%s", text)
		}
		l.skipSecrets = true
		mustParse(t, l, text)
	}
}
