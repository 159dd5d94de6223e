package tests

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// trustRelay writes the relay's certificate into the daemon's directory
// and sets relay.tls.ca_file to it.
func trustRelay(t *testing.T, d *daemon, relay *smtptest.Server) {
	t.Helper()
	caFile := filepath.Join(d.dir, "relay-ca.pem")
	if err := os.WriteFile(caFile, relay.Certificate().CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	d.settings.set("relay.tls", "ca_file", tomlString(caFile))
}

// writeSecret writes a secret file in the daemon's directory.
func writeSecret(t *testing.T, d *daemon, name, value string) string {
	t.Helper()
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAuthOAuth2: SMTP on the unix socket → relayq (type = "oauth2", refresh
// token and client secret in files) → token endpoint (httptest) for access
// tokens, and → smtptest relay over STARTTLS with AUTH XOAUTH2. The relay
// rejects the first access token; relayq refreshes once more and delivers
// on a new connection. The debug log holds none of the secrets.
func TestAuthOAuth2(t *testing.T) {
	const user = "relayq@example.com"
	var mu sync.Mutex
	var refreshes []string // refresh_token of each request
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		refreshes = append(refreshes, r.PostForm.Get("refresh_token"))
		tok := []string{"stale-access-SECRET", "fresh-access-SECRET"}[min(len(refreshes), 2)-1]
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	}))
	defer endpoint.Close()
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{user: "fresh-access-SECRET"}})
	d := newDaemon(t, relay, func(s settings) {
		s.set("log", "level", `"debug"`)
		s.set("relay.auth", "type", `"oauth2"`)
		s.set("relay.auth", "user", tomlString(user))
		s.set("relay.auth", "client_id", `"relayq-client"`)
		s.set("relay.auth", "token_url", tomlString(endpoint.URL+"/token"))
		s.set("relay.auth", "scopes", `["https://mail.google.com/"]`)
	})
	d.settings.set("relay.auth", "client_secret_file", tomlString(writeSecret(t, d, "client-secret", "client-SECRET")))
	d.settings.set("relay.auth", "refresh_token_file", tomlString(writeSecret(t, d, "refresh-token", "refresh-SECRET")))
	trustRelay(t, d, relay)
	d.writeConfig()
	d.start()

	from, to := "oauth@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 5)
	d.submit(t, from, to, body)
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if got[0].AuthUser != user || !got[0].TLS || !sameMessage(got[0].Body, body) {
		t.Errorf("delivered as %q over TLS %v (body equal %v); want the message, as %s over TLS", got[0].AuthUser, got[0].TLS, sameMessage(got[0].Body, body), user)
	}
	d.waitQueueEmpty(t, 5*time.Second)
	mu.Lock()
	if len(refreshes) != 2 || refreshes[0] != "refresh-SECRET" {
		t.Errorf("token endpoint got refresh tokens %q, want refresh-SECRET twice (the first access token, then one renewal)", refreshes)
	}
	mu.Unlock()
	if code := d.stop(); code != 0 {
		t.Errorf("relayq serve exited %d", code)
	}
	if log := d.log.String(); strings.Contains(log, "SECRET") {
		t.Errorf("the daemon's log holds a secret:\n%s", log)
	}
}

// TestAuthWrongPassword: SMTP on the unix socket → relayq (password from
// pass_env) → smtptest relay over STARTTLS that answers AUTH with 535. The
// message stays queued, deferred with the relay's 535 and its text, never
// dead-lettered, and the relay never sees MAIL. Restarted with the right
// password, relayq delivers it.
func TestAuthWrongPassword(t *testing.T) {
	const user, pass = "relayq", "right-pass"
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{user: pass}})
	t.Setenv("TEST_RELAY_PASSWORD", "wrong-pass-SECRET") // not RELAYQ_*, which testEnv drops
	d := newDaemon(t, relay, func(s settings) {
		s.set("relay.auth", "user", tomlString(user))
		s.set("relay.auth", "pass_env", `"TEST_RELAY_PASSWORD"`)
	})
	trustRelay(t, d, relay)
	d.writeConfig()
	d.start()

	from, to := "auth@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(2, from, to, 5))
	r := waitDeferred(t, d, id)
	if r.ReplyCode != 535 || r.Enhanced != "5.7.8" || !strings.Contains(r.LastReply, "Authentication credentials invalid") {
		t.Errorf("deferred with %+v, want the relay's 535 5.7.8 Authentication credentials invalid", r)
	}
	if len(d.deadList(t)) != 0 {
		t.Errorf("a failed login dead-lettered the message")
	}
	if sawMail(relay) {
		t.Errorf("relay saw MAIL although AUTH failed")
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d", code)
	}
	log := d.log.String()
	if !strings.Contains(log, "Authentication credentials invalid") || strings.Contains(log, "SECRET") {
		t.Errorf("the daemon's log should show the relay's 535 text and not the password:\n%s", log)
	}

	t.Setenv("TEST_RELAY_PASSWORD", pass)
	d.start()
	if got := relay.WaitMessages(t, 1, 15*time.Second); got[0].AuthUser != user {
		t.Errorf("delivered as %q, want %s", got[0].AuthUser, user)
	}
	d.waitQueueEmpty(t, 5*time.Second)
}
