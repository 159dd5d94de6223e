package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"relayq/transport"
	"relayq/transport/smtptest"
)

// TestRelayAuthKeys: [relay.auth] keys, from the file to a relay session:
// pass_env, a refresh token exchanged at token_url (with scopes and the
// client secret from a file), and an access_token_file read again at every
// login.
func TestRelayAuthKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const user = "relayq@example.com"
	relay := smtptest.NewServer(t, smtptest.Options{
		TLS:  true,
		Auth: map[string]string{user: "env-pass"}, Tokens: map[string]string{user: "tok-2"},
		AuthMechanisms: []string{"PLAIN", "XOAUTH2"},
	})
	url := "smtp://" + relay.Addr()
	tlsKeys := "[relay.tls]\nca_file = \"" + writePEM(t, "ca.pem", relay.Certificate().CertPEM) + "\"\n"

	t.Run("pass_env", func(t *testing.T) {
		t.Setenv("RELAYQ_TEST_PASS", "env-pass")
		tr, o := relayFromConfig(t, url, tlsKeys+"[relay.auth]\nuser = \""+user+"\"\npass_env = \"RELAYQ_TEST_PASS\"\n")
		if o.Auth.Password != "env-pass" || o.Auth.TokenSource != nil {
			t.Errorf("Auth = %+v, want the password from the environment", o.Auth)
		}
		if err := sendOne(tr); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("refresh token", func(t *testing.T) {
		var mu sync.Mutex
		var forms []map[string][]string
		ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			mu.Lock()
			forms = append(forms, r.PostForm)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600})
		}))
		defer ep.Close()
		keys := tlsKeys + "[relay.auth]\ntype = \"oauth2\"\nuser = \"" + user + "\"\nclient_id = \"cid\"\n" +
			"client_secret_file = \"" + write("secret", "csecret\n") + "\"\nrefresh_token_file = \"" + write("rt", "rt-0\n") + "\"\n" +
			"token_url = \"" + ep.URL + "/token\"\nscopes = [\"https://mail.google.com/\"]\n"
		tr, o := relayFromConfig(t, url, keys)
		if o.Auth.TokenSource == nil || o.Auth.Renew == nil {
			t.Fatalf("Auth = %+v, want a refreshing token source", o.Auth)
		}
		if err := sendOne(tr); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(forms) != 1 || forms[0]["refresh_token"][0] != "rt-0" || forms[0]["scope"][0] != "https://mail.google.com/" {
			t.Errorf("token requests %v, want one with refresh_token=rt-0 and the scope", forms)
		}
	})

	t.Run("access_token_file", func(t *testing.T) {
		file := write("token", "tok-1\n")
		tr, _ := relayFromConfig(t, url, tlsKeys+"[relay.auth]\ntype = \"oauth2\"\nuser = \""+user+"\"\naccess_token_file = \""+file+"\"\n")
		if err := sendOne(tr); !errors.Is(err, transport.ErrTokenRejected) {
			t.Fatalf("err = %v with the file's first token, want ErrTokenRejected", err)
		}
		write("token", "tok-2\n")
		if err := sendOne(tr); err != nil {
			t.Fatalf("after the file was updated: %v", err)
		}
	})
	if n := len(relay.Messages()); n != 3 {
		t.Errorf("relay took %d messages, want 3", n)
	}
}
