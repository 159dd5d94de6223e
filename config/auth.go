package config

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// Authentication types (relay.auth.type).
const (
	AuthLogin  = "login"  // a password: PLAIN, LOGIN, CRAM-MD5
	AuthOAuth2 = "oauth2" // an OAuth2 access token: XOAUTH2, OAUTHBEARER
)

// authMethods maps each SASL mechanism relay.auth.method takes to the type
// of credentials it needs.
var authMethods = map[string]string{
	"PLAIN": AuthLogin, "LOGIN": AuthLogin, "CRAM-MD5": AuthLogin,
	"XOAUTH2": AuthOAuth2, "OAUTHBEARER": AuthOAuth2,
}

// oauth2Keys are the keys of [relay.auth] that only type = "oauth2" takes.
var oauth2Keys = []string{
	"access_token", "access_token_file", "client_id", "client_secret", "client_secret_file",
	"refresh_token", "refresh_token_file", "token_url", "scopes",
}

// isSecretKey reports whether the [relay] key k ("auth.refresh_token") is
// tagged redact:"secret".
func isSecretKey(k string) bool {
	t := reflect.TypeFor[RelayConfig]()
	var f reflect.StructField
	for _, name := range strings.Split(k, ".") {
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := range t.NumField() {
			if t.Field(i).Tag.Get("toml") == name {
				f, found = t.Field(i), true
			}
		}
		if !found {
			return false
		}
		t = f.Type
	}
	return f.Tag.Get("redact") == "secret"
}

// auth checks [relay.auth] and reads the secrets it points to (files,
// pass_env). Every problem names its key.
func (x *relayResolver) auth() {
	a, c := &x.r.Auth, x.c
	switch t := strings.ToLower(a.Type); t {
	case "", AuthLogin:
		a.Type = AuthLogin
	case AuthOAuth2:
		a.Type = t
	default:
		c.add("relay.auth.type", "%q is not one of login, oauth2", a.Type)
		return
	}
	if a.Method != "" {
		a.Method = strings.ToUpper(a.Method)
		switch want, ok := authMethods[a.Method]; {
		case !ok:
			c.add("relay.auth.method", "%q is not one of PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER", a.Method)
		case want != a.Type:
			c.add("relay.auth.method", "%s needs relay.auth.type = %q, but the type is %q", a.Method, want, a.Type)
		}
	}
	if a.Type == AuthOAuth2 {
		x.oauth2()
	} else {
		x.password()
	}
	if a.AllowInsecure && x.r.Socket == "" && !isLoopback(x.r.Host) {
		c.add("relay.auth.allow_insecure", "is only allowed for a loopback or unix-socket relay: "+
			"the %s would cross the network in clear to %s", secretName(a.Type), x.r.Host)
	}
	if a.User != "" && x.r.TLS.IgnoreTLS && !a.AllowInsecure {
		c.add("relay.tls.ignore_tls", "would send the %s of relay.auth.user in clear; "+
			"set relay.auth.allow_insecure = true if the relay is on loopback", secretName(a.Type))
	}
}

func secretName(typ string) string {
	if typ == AuthOAuth2 {
		return "access token"
	}
	return "password"
}

// password checks type = "login": a user and exactly one of pass (or the
// url's), pass_file and pass_env, and no OAuth2 key.
func (x *relayResolver) password() {
	a, c := &x.r.Auth, x.c
	for _, k := range oauth2Keys {
		if c.set("relay.auth." + k) {
			c.add("relay.auth."+k, "is an OAuth2 setting, but relay.auth.type is %q: set type = \"oauth2\"", a.Type)
		}
	}
	passKey := x.key("auth.pass")
	sources := x.sources([][2]string{{passKey, a.Pass}, {"relay.auth.pass_file", a.PassFile}, {"relay.auth.pass_env", a.PassEnv}})
	if len(sources) > 1 {
		c.add(sources[1], "is set together with %s; set one or the other", sources[0])
		return
	}
	switch {
	case a.User == "" && len(sources) == 1:
		c.add(sources[0], "is set but relay.auth.user is not")
	case a.User != "" && len(sources) == 0:
		c.add(x.key("auth.user"), "user %q has no password: set relay.auth.pass or relay.auth.pass_file (or relay.auth.pass_env)", a.User)
	case a.User == "" && a.Method != "":
		c.add("relay.auth.method", "is set but relay.auth.user is not")
	}
	if a.PassFile != "" {
		x.readSecret("relay.auth.pass_file", a.PassFile, &a.Pass)
	}
	if c.set("relay.auth.pass_env") {
		x.readEnv("relay.auth.pass_env", a.PassEnv, &a.Pass)
	}
}

// oauth2 checks type = "oauth2": a user, no password, and either a static
// access token or a refresh token with its client and token endpoint.
func (x *relayResolver) oauth2() {
	a, c := &x.r.Auth, x.c
	for _, k := range []string{"auth.pass", "auth.pass_file", "auth.pass_env"} {
		if c.set("relay."+k) || x.from[k] {
			c.add(x.key(k), "is a password, but relay.auth.type is \"oauth2\": give relay.auth.access_token or relay.auth.refresh_token")
		}
	}
	if a.User == "" {
		c.add("relay.auth.type", "\"oauth2\" needs relay.auth.user, the mailbox the token was issued for")
	}
	access := x.sources([][2]string{{"relay.auth.access_token", a.AccessToken}, {"relay.auth.access_token_file", a.AccessTokenFile}})
	refresh := x.sources([][2]string{{"relay.auth.refresh_token", a.RefreshToken}, {"relay.auth.refresh_token_file", a.RefreshTokenFile}})
	secret := x.sources([][2]string{{"relay.auth.client_secret", a.ClientSecret}, {"relay.auth.client_secret_file", a.ClientSecretFile}})
	for _, s := range [][]string{access, refresh, secret} {
		if len(s) > 1 {
			c.add(s[1], "is set together with %s; set one or the other", s[0])
			return
		}
	}
	switch {
	case len(access) == 1 && len(refresh) == 1:
		c.add(access[0], "is set together with %s: give a static access token or a refresh token, not both", refresh[0])
		return
	case len(access) == 0 && len(refresh) == 0:
		c.add("relay.auth.type", "\"oauth2\" needs relay.auth.access_token (or access_token_file), "+
			"or relay.auth.refresh_token (or refresh_token_file) with client_id and token_url")
		return
	case len(access) == 1:
		for _, k := range []string{"client_id", "client_secret", "client_secret_file", "token_url", "scopes"} {
			if c.set("relay.auth." + k) {
				c.add("relay.auth."+k, "is only used with relay.auth.refresh_token, not with %s", access[0])
			}
		}
		if a.AccessTokenFile != "" {
			x.readSecret(access[0], a.AccessTokenFile, &a.AccessToken)
		}
		return
	}
	if a.ClientID == "" {
		c.add(refresh[0], "needs relay.auth.client_id, the OAuth2 client it was issued to")
	}
	if a.TokenURL == "" {
		c.add(refresh[0], "needs relay.auth.token_url, where access tokens are obtained")
	} else if msg := checkTokenURL(a.TokenURL); msg != "" {
		c.add("relay.auth.token_url", "%s", msg)
	}
	if a.RefreshTokenFile != "" {
		x.readSecret(refresh[0], a.RefreshTokenFile, &a.RefreshToken)
	}
	if a.ClientSecretFile != "" {
		x.readSecret("relay.auth.client_secret_file", a.ClientSecretFile, &a.ClientSecret)
	}
}

// sources returns the keys of candidates (key, value) whose value is set,
// in order.
func (x *relayResolver) sources(candidates [][2]string) []string {
	var set []string
	for _, kv := range candidates {
		if kv[1] != "" || strings.HasPrefix(kv[0], "relay.auth.") && x.c.set(kv[0]) {
			set = append(set, kv[0])
		}
	}
	return set
}

// checkTokenURL returns what is wrong with a token endpoint, or "". Plain
// http is refused except on loopback: the client secret and refresh token
// travel in the request.
func checkTokenURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "is not an absolute url (want https://host/path)"
	}
	switch {
	case u.User != nil:
		return "must not hold credentials: use relay.auth.client_id and client_secret"
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return "is http://, which would send the refresh token and client secret in clear: use https://"
	default:
		return "scheme " + u.Scheme + " is not https"
	}
	return ""
}

// readSecret reads the secret file path (key names it) into *dst: an
// absolute path, one trailing newline dropped, not empty.
func (x *relayResolver) readSecret(key, path string, dst *string) {
	c := x.c
	if !filepath.IsAbs(path) {
		c.add(key, "%q is not an absolute path", path)
		return
	}
	if x.skipSecrets {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		c.add(key, "%v", err)
		return
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		c.add(key, "%s is empty", path)
		return
	}
	*dst = s
}

// readEnv reads the environment variable name (key names it) into *dst.
func (x *relayResolver) readEnv(key, name string, dst *string) {
	if name == "" || strings.ContainsAny(name, "= \x00") {
		x.c.add(key, "%q is not an environment variable name", name)
		return
	}
	if x.skipSecrets {
		return
	}
	v := x.getenv(name)
	if v == "" {
		x.c.add(key, "environment variable %s is not set or empty", name)
		return
	}
	*dst = v
}
