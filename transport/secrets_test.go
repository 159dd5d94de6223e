package transport

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"relayq/transport/smtptest"
)

// secretEchoes are the forms of secret a relay or a token endpoint may
// send back.
func secretEchoes(user, secret string) []string {
	return []string{
		secret, url.QueryEscape(secret), url.PathEscape(secret),
		b64(secret), base64.RawStdEncoding.EncodeToString([]byte(secret)),
		b64("\x00" + user + "\x00" + secret), b64(user + "\x00" + user + "\x00" + secret),
		b64("user=" + user + "\x01auth=Bearer " + secret + "\x01\x01"),
		b64("n,a=" + user + ",\x01auth=Bearer " + secret + "\x01\x01"),
	}
}

// noSecrets fails the test if text holds any form of any secret.
func noSecrets(t *testing.T, where, text string, user string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range secretEchoes(user, s) {
			if strings.Contains(text, form) {
				t.Errorf("%s holds %q (a form of %q):\n%s", where, form, s, text)
			}
		}
	}
}

// TestRelayEchoedSecretScrubbed: a relay whose 535 quotes the credentials
// back (the whole AUTH PLAIN response in base64, the password as it is,
// URL-encoded, in base64) shows none of them in what transport reports:
// the error delivery stores and logs, the transcript, the debug log and
// Verify's report.
func TestRelayEchoedSecretScrubbed(t *testing.T) {
	echo := "5.7.8 AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass) + " rejected\n" +
		"5.7.8 password " + testPass + " / " + url.QueryEscape(testPass) + " / " + url.PathEscape(testPass) +
		" / LOGIN " + b64(testPass) + " / " + base64.RawStdEncoding.EncodeToString([]byte(testPass))
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{testUser: testPass},
		Script: smtptest.Script{Auth: smtptest.Times(10, smtptest.Reply(535, echo))}})
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			var buf lockedBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tr := newTransport(t, srv, withAuth(Auth{Mechanism: mech, Username: testUser, Password: testPass}),
				func(o *Options) { o.Logger, o.Debug = log, true })
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			te := wantError(t, err, StageAuth, true)
			if !strings.Contains(err.Error(), "535") || !strings.Contains(err.Error(), redactedLine) {
				t.Errorf("err = %v, want the relay's 535 with the secret redacted", err)
			}
			noSecrets(t, "error", err.Error(), testUser, testPass)
			noSecrets(t, "transcript", te.Transcript, testUser, testPass)
			rep, verr := tr.Verify(context.Background(), nil)
			if verr == nil || rep.Auth == nil {
				t.Fatalf("Verify: %v, %+v", verr, rep)
			}
			js, _ := json.Marshal(rep)
			noSecrets(t, "Verify's report", string(js), testUser, testPass)
			noSecrets(t, "Verify's error", verr.Error(), testUser, testPass)
			noSecrets(t, "debug log", buf.String(), testUser, testPass)
		})
	}
}

// TestTokenSecretsScrubbed: an OAuth2 token endpoint whose error quotes
// the client secret and the refresh token (as sent, URL-encoded, JSON-
// escaped), and a relay whose 535 quotes the XOAUTH2 response with the
// access token: neither shows in the error or the debug log.
func TestTokenSecretsScrubbed(t *testing.T) {
	const clientSecret, refresh = "client/s3cret+x", "1//refresh-TOKEN"
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		desc := fmt.Sprintf("client %s (%s) refresh %s (%s)", r.PostForm.Get("client_secret"),
			url.QueryEscape(clientSecret), r.PostForm.Get("refresh_token"), url.QueryEscape(refresh))
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": desc})
	}))
	defer endpoint.Close()
	conf := &oauth2.Config{ClientID: "id", ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: endpoint.URL, AuthStyle: oauth2.AuthStyleInParams}}
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logTo := func(o *Options) { o.Logger, o.Debug = log, true }

	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{testUser: "tok"}})
	r := NewTokenRefresher(conf, refresh, endpoint.Client(), time.Minute)
	_, err := send(t, newTransport(t, relay, withRefresher(r), logTo), message("s@example.org", "r@example.net"))
	wantError(t, err, StageAuth, true)
	if !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("err = %v, want the endpoint's invalid_grant", err)
	}
	noSecrets(t, "error", err.Error(), testUser, clientSecret, refresh)
	if _, err := r.Token(); err == nil {
		t.Fatal("Token: no error")
	} else {
		noSecrets(t, "TokenRefresher's error", err.Error(), testUser, clientSecret, refresh)
	}

	const access = "ya29.access-TOKEN"
	echo := smtptest.Reply(535, "5.7.8 XOAUTH2 "+b64("user="+testUser+"\x01auth=Bearer "+access+"\x01\x01")+" refused for "+access)
	relay = smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{testUser: access},
		Script: smtptest.Script{Auth: smtptest.Times(10, echo)}})
	_, err = send(t, newTransport(t, relay, withToken(access), logTo), message("s@example.org", "r@example.net"))
	te := wantError(t, err, StageAuth, true)
	noSecrets(t, "error", err.Error(), testUser, access)
	noSecrets(t, "transcript", te.Transcript, testUser, access)
	noSecrets(t, "debug log", buf.String(), testUser, clientSecret, refresh, access)
}

// TestBase64SecretAnywhere: a secret inside any base64 text, at any
// offset, in either alphabet, padded or not, is scrubbed.
func TestBase64SecretAnywhere(t *testing.T) {
	const secret = "hunter2-pass"
	s := &secrets{static: []string{secret}, user: "u"}
	for pre := range 6 {
		for post := range 4 {
			plain := strings.Repeat("p", pre) + secret + strings.Repeat("q", post)
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				text := "535 " + enc.EncodeToString([]byte(plain)) + " no"
				got := s.scrub(text)
				if !strings.Contains(got, redactedLine) {
					t.Errorf("prefix %d suffix %d: %q not scrubbed", pre, post, text)
				}
			}
		}
	}
	if got := s.scrub("250 nothing secret here"); got != "250 nothing secret here" {
		t.Errorf("text without secrets changed: %q", got)
	}
}
