package transport

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/oauth2"

	"relayq/transport/smtptest"
)

const (
	testUser = "alice@example.org"
	testPass = "s3cret pass"
)

// tokenEndpoint is an OAuth2 token endpoint that answers refresh_token
// grants with the access tokens it is given, in order (the last repeats),
// and a new refresh token each time ("rt-1", "rt-2"…).
type tokenEndpoint struct {
	url       string
	client    *http.Client
	expiresIn int // seconds; 0 leaves expires_in out

	mu     sync.Mutex
	tokens []string
	forms  []url.Values // each request's form, with the client's id and secret
}

func newTokenEndpoint(t *testing.T, expiresIn int, tokens ...string) *tokenEndpoint {
	e := &tokenEndpoint{expiresIn: expiresIn, tokens: tokens}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.url, e.client = srv.URL+"/token", srv.Client()
	return e
}

func (e *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form := r.PostForm
	if id, secret, ok := r.BasicAuth(); ok {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	e.mu.Lock()
	e.forms = append(e.forms, form)
	n := len(e.forms)
	tok := e.tokens[min(n, len(e.tokens))-1]
	e.mu.Unlock()
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "refresh_token": fmt.Sprintf("rt-%d", n)}
	if e.expiresIn > 0 {
		resp["expires_in"] = e.expiresIn
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// calls returns the forms of the requests so far.
func (e *tokenEndpoint) calls() []url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.forms)
}

// refresher returns a TokenRefresher for e, starting from refresh token
// "rt-0".
func (e *tokenEndpoint) refresher(scopes ...string) *TokenRefresher {
	conf := &oauth2.Config{
		ClientID: "client-id", ClientSecret: "client-s3cret",
		Endpoint: oauth2.Endpoint{TokenURL: e.url}, Scopes: scopes,
	}
	return NewTokenRefresher(conf, "rt-0", e.client, time.Minute)
}

func withAuth(a Auth) func(*Options) { return func(o *Options) { o.Auth = a } }

func withToken(tok string) func(*Options) {
	return withAuth(Auth{Username: testUser, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok})})
}

func withRefresher(r *TokenRefresher) func(*Options) {
	return withAuth(Auth{Username: testUser, TokenSource: r, Renew: r.Renew})
}

// authLines returns the lines the relay received from AUTH on: the command
// and the client's answers, up to MAIL.
func authLines(srv *smtptest.Server) []string {
	var lines []string
	in := false
	for _, c := range srv.Commands() {
		switch up := strings.ToUpper(c); {
		case strings.HasPrefix(up, "AUTH "):
			in = true
		case strings.HasPrefix(up, "MAIL "), strings.HasPrefix(up, "EHLO "):
			in = false
		}
		if in {
			lines = append(lines, c)
		}
	}
	return lines
}

// TestAuthMechanismExchange: each mechanism, set with Auth.Mechanism in any
// case, puts exactly its exchange on the wire and logs in.
func TestAuthMechanismExchange(t *testing.T) {
	all := []string{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"}
	password := func(mech string) func(*Options) {
		return withAuth(Auth{Mechanism: mech, Username: testUser, Password: testPass})
	}
	token := func(mech string) func(*Options) {
		return withAuth(Auth{Mechanism: mech, Username: testUser, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok-good"})})
	}
	tests := []struct {
		mech string
		edit func(*Options)
		want []string // client lines from AUTH on; "" = any
	}{
		{"PLAIN", password("plain"), []string{"AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass)}},
		{"LOGIN", password("Login"), []string{"AUTH LOGIN", b64(testUser), b64(testPass)}},
		// RFC 2195: user, space, hex HMAC-MD5 of the challenge (smtptest's
		// first is "<1.0@smtptest.localhost>") keyed with the password.
		{"CRAM-MD5", password("CRAM-MD5"), []string{"AUTH CRAM-MD5", b64(testUser + " " + cramMD5Digest(testPass, "<1.0@smtptest.localhost>"))}},
		{"XOAUTH2", token("xoauth2"), []string{"AUTH XOAUTH2 " + b64("user="+testUser+"\x01auth=Bearer tok-good\x01\x01")}},
		{"OAUTHBEARER", token("OAUTHBEARER"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.mech, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{
				TLS: true, AuthMechanisms: all,
				Auth: map[string]string{testUser: testPass}, Tokens: map[string]string{testUser: "tok-good"},
			})
			tr := newTransport(t, srv, tc.edit)
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if got := srv.WaitMessages(t, 1, 0)[0]; got.AuthUser != testUser || !got.TLS {
				t.Errorf("delivered as %q (TLS %v), want as %s over TLS", got.AuthUser, got.TLS, testUser)
			}
			lines := authLines(srv)
			if tc.mech == "OAUTHBEARER" {
				_, port, _ := strings.Cut(srv.Addr(), ":")
				tc.want = []string{"AUTH OAUTHBEARER " + b64("n,a="+testUser+",\x01host=127.0.0.1\x01port="+port+"\x01auth=Bearer tok-good\x01\x01")}
			}
			if !slices.Equal(lines, tc.want) {
				t.Errorf("AUTH exchange:\n got %q\nwant %q", lines, tc.want)
			}
		})
	}
}

// TestAuthBestMechanism: without Auth.Mechanism, the first of the
// preference list the relay offers is used.
func TestAuthBestMechanism(t *testing.T) {
	tests := []struct {
		name    string
		offered []string
		token   bool
		inClear bool // no TLS, AllowInsecureAuth
		want    string
	}{
		{"password: PLAIN first", []string{"CRAM-MD5", "LOGIN", "PLAIN"}, false, false, "PLAIN"},
		{"password: LOGIN next", []string{"CRAM-MD5", "LOGIN", "XOAUTH2"}, false, false, "LOGIN"},
		{"password: CRAM-MD5 last", []string{"XOAUTH2", "CRAM-MD5"}, false, false, "CRAM-MD5"},
		{"password in clear: CRAM-MD5 first", []string{"PLAIN", "LOGIN", "CRAM-MD5"}, false, true, "CRAM-MD5"},
		{"password in clear, no CRAM-MD5", []string{"LOGIN", "PLAIN"}, false, true, "PLAIN"},
		{"token: XOAUTH2 first", []string{"OAUTHBEARER", "PLAIN", "XOAUTH2"}, true, false, "XOAUTH2"},
		{"token: OAUTHBEARER next", []string{"PLAIN", "LOGIN", "OAUTHBEARER"}, true, false, "OAUTHBEARER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{
				TLS: !tc.inClear, AuthMechanisms: tc.offered,
				Auth: map[string]string{testUser: testPass}, Tokens: map[string]string{testUser: "tok"},
			})
			edit := withAuth(Auth{Username: testUser, Password: testPass})
			if tc.token {
				edit = withToken("tok")
			}
			tr := newTransport(t, srv, edit, func(o *Options) { o.AllowInsecureAuth = tc.inClear })
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if lines := authLines(srv); len(lines) == 0 || !strings.HasPrefix(lines[0], "AUTH "+tc.want) {
				t.Errorf("AUTH exchange %q, want AUTH %s", lines, tc.want)
			}
		})
	}
}

// TestAuthMechanismUnavailable: a configured mechanism the relay does not
// offer, or credentials no offered mechanism takes, fail the session
// (temporarily) before anything is sent, with an error naming what the
// relay offers.
func TestAuthMechanismUnavailable(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"method not offered", withAuth(Auth{Mechanism: "cram-md5", Username: testUser, Password: testPass}),
			"CRAM-MD5 is configured, but the relay offers only PLAIN LOGIN"},
		{"token, no OAuth2 mechanism", withToken("tok"),
			"none of XOAUTH2 OAUTHBEARER takes an OAuth2 token; the relay offers PLAIN LOGIN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{testUser: testPass}})
			_, err := send(t, newTransport(t, srv, tc.edit), message("s@example.org", "r@example.net"))
			te := wantError(t, err, StageAuth, true)
			if !errors.Is(te, ErrAuthUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrAuthUnavailable saying %q", err, tc.want)
			}
			if lines := authLines(srv); len(lines) > 0 {
				t.Errorf("AUTH sent anyway: %q", lines)
			}
		})
	}
}

// TestTokenRefreshAfterRejection: the relay rejects the first access token
// (error challenge, then 535); transport renews it (exactly one more
// refresh) and logs in on a new connection with the new one; the message
// is delivered. The next connection reuses the new token. The rotated
// refresh token is the one used for the renewal.
func TestTokenRefreshAfterRejection(t *testing.T) {
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			ep := newTokenEndpoint(t, 3600, "tok-stale", "tok-fresh")
			srv := smtptest.NewServer(t, smtptest.Options{TLS: true, AuthMechanisms: []string{mech}, Tokens: map[string]string{testUser: "tok-fresh"}})
			tr := newTransport(t, srv, withRefresher(ep.refresher("https://mail.google.com/")), func(o *Options) { o.MaxMessages = 1 })
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			calls := ep.calls()
			if len(calls) != 2 {
				t.Fatalf("%d token refreshes, want 2 (the first token, then one renewal)", len(calls))
			}
			for i, want := range []string{"rt-0", "rt-1"} {
				f := calls[i]
				if f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != want ||
					f.Get("client_id") != "client-id" || f.Get("scope") != "https://mail.google.com/" {
					t.Errorf("refresh %d sent %v, want grant_type=refresh_token refresh_token=%s client_id=client-id scope=https://mail.google.com/", i+1, f, want)
				}
			}
			if n := srv.Connections(); n != 2 {
				t.Errorf("%d connections, want 2 (AUTH retried on a fresh one)", n)
			}
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if n := len(ep.calls()); n != 2 {
				t.Errorf("%d token refreshes after a second connection, want still 2: the valid token is reused", n)
			}
			if got := srv.WaitMessages(t, 2, time.Second); got[0].AuthUser != testUser {
				t.Errorf("delivered as %q, want %s", got[0].AuthUser, testUser)
			}
		})
	}
}

// TestTokenRejectedTwice: when the renewed token is rejected as well, the
// session fails once with the relay's 535, temporarily (a deferral), after
// exactly one renewal; a static token (no Renew) is not retried at all.
func TestTokenRejectedTwice(t *testing.T) {
	ep := newTokenEndpoint(t, 3600, "tok-bad")
	tests := []struct {
		name      string
		edit      func(*Options)
		wantConns int
	}{
		{"refreshed", withRefresher(ep.refresher()), 2},
		{"static", withToken("tok-bad"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{testUser: "tok-good"}})
			_, err := send(t, newTransport(t, srv, tc.edit), message("s@example.org", "r@example.net"))
			te := wantError(t, err, StageAuth, true)
			var se *smtp.SMTPError
			if !errors.Is(te, ErrTokenRejected) || !errors.As(te, &se) || se.Code != 535 {
				t.Fatalf("err = %v, want ErrTokenRejected with the relay's 535", err)
			}
			if !strings.Contains(err.Error(), "status 401") || !strings.Contains(err.Error(), "Authentication credentials invalid") {
				t.Errorf("err = %q, want the challenge's status and the relay's text", err)
			}
			if n := srv.Connections(); n != tc.wantConns {
				t.Errorf("%d connections, want %d", n, tc.wantConns)
			}
		})
	}
	if n := len(ep.calls()); n != 2 {
		t.Errorf("%d token refreshes, want 2: one token, one renewal", n)
	}
}

// TestTokenRefreshedBeforeExpiry: a token that expires within a minute is
// refreshed before the next AUTH, without waiting for a rejection; a token
// valid for an hour is reused.
func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	for _, tc := range []struct {
		expiresIn, wantCalls int
	}{{30, 3}, {3600, 1}} {
		t.Run(fmt.Sprintf("expires_in=%d", tc.expiresIn), func(t *testing.T) {
			ep := newTokenEndpoint(t, tc.expiresIn, "tok")
			srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{testUser: "tok"}})
			tr := newTransport(t, srv, withRefresher(ep.refresher()), func(o *Options) { o.MaxMessages = 1 })
			for range 3 {
				mustSend(t, tr, message("s@example.org", "r@example.net"))
			}
			if n := len(ep.calls()); n != tc.wantCalls {
				t.Errorf("%d token refreshes for 3 connections, want %d", n, tc.wantCalls)
			}
			if n := srv.Connections(); n != 3 {
				t.Errorf("%d connections, want 3 (none rejected)", n)
			}
		})
	}
}

// TestTokenEndpointFailure: a token endpoint that refuses the refresh
// token fails the session at StageAuth, temporarily, before AUTH is sent.
func TestTokenEndpointFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`)
	}))
	defer srv.Close()
	conf := &oauth2.Config{ClientID: "id", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}}
	r := NewTokenRefresher(conf, "rt-revoked", srv.Client(), time.Minute)
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{testUser: "tok"}})
	_, err := send(t, newTransport(t, relay, withRefresher(r)), message("s@example.org", "r@example.net"))
	wantError(t, err, StageAuth, true)
	if !strings.Contains(err.Error(), "invalid_grant") || strings.Contains(err.Error(), "rt-revoked") {
		t.Errorf("err = %q, want the endpoint's invalid_grant and not the refresh token", err)
	}
	if lines := authLines(relay); len(lines) > 0 {
		t.Errorf("AUTH sent without a token: %q", lines)
	}
}

// TestAuthSecretsNotLogged: at debug level, the log of successful and
// failed logins (password, static token, refreshed and rejected tokens)
// holds no secret, plain or base64.
func TestAuthSecretsNotLogged(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logTo := func(o *Options) { o.Logger = log }
	ep := newTokenEndpoint(t, 3600, "tok-stale-SECRET", "tok-fresh-SECRET")
	srv := smtptest.NewServer(t, smtptest.Options{
		TLS:  true,
		Auth: map[string]string{testUser: testPass}, Tokens: map[string]string{testUser: "tok-fresh-SECRET"},
		AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"},
	})
	for _, edit := range []func(*Options){
		withAuth(Auth{Username: testUser, Password: testPass}),
		withAuth(Auth{Mechanism: "LOGIN", Username: testUser, Password: testPass}),
		withAuth(Auth{Username: testUser, Password: "wrong-SECRET"}),
		withRefresher(ep.refresher()),
		withAuth(Auth{Mechanism: "OAUTHBEARER", Username: testUser, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok-static-SECRET"})}),
	} {
		send(t, newTransport(t, srv, edit, logTo), message("s@example.org", "r@example.net"))
	}
	out := buf.String()
	if !strings.Contains(out, "mechanism=XOAUTH2") || !strings.Contains(out, "relay AUTH failed") {
		t.Fatalf("debug log does not show the logins:\n%s", out)
	}
	for _, secret := range []string{testPass, "SECRET", "client-s3cret", "rt-0", "rt-1", b64(testPass), b64("\x00" + testUser + "\x00" + testPass)} {
		if strings.Contains(out, secret) {
			t.Errorf("debug log holds %q:\n%s", secret, out)
		}
	}
}

// TestCRAMMD5Client is RFC 2195's example.
func TestCRAMMD5Client(t *testing.T) {
	c := &cramMD5Client{user: "tim", pass: "tanstaaftanstaaf"}
	if mech, ir, err := c.Start(); mech != "CRAM-MD5" || ir != nil || err != nil {
		t.Fatalf("Start() = %q, %q, %v", mech, ir, err)
	}
	got, err := c.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"))
	if want := "tim b913a602c7eda7a495b4e6e7334d3890"; err != nil || string(got) != want {
		t.Errorf("Next = %q, %v; want %q", got, err, want)
	}
	if _, err := c.Next([]byte("again")); err == nil {
		t.Errorf("a second challenge was answered")
	}
}

func cramMD5Digest(pass, challenge string) string {
	c := &cramMD5Client{user: "u", pass: pass}
	c.Start()
	resp, _ := c.Next([]byte(challenge))
	return strings.TrimPrefix(string(resp), "u ")
}

// lockedBuffer is a bytes.Buffer for a logger and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestInteropOAuthBearerRefresh runs OAUTHBEARER against go-smtp's server
// with go-sasl's OAUTHBEARER server, an implementation independent of
// smtptest: it rejects the first token with an error challenge (and then a
// 454, not a 535), transport answers %x01, renews the token once and logs
// in on a new connection.
func TestInteropOAuthBearerRefresh(t *testing.T) {
	cert := smtptest.NewCertificate(t)
	be := &bearerBackend{token: "tok-fresh"}
	s := smtp.NewServer(be)
	s.Domain = "interop.localhost"
	s.TLSConfig = cert.ServerConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })

	ep := newTokenEndpoint(t, 3600, "tok-stale", "tok-fresh")
	r := ep.refresher()
	tr := New(Options{
		Address: ln.Addr().String(), LocalName: localName,
		TLS:  &tls.Config{RootCAs: cert.Pool},
		Auth: Auth{Mechanism: "OAUTHBEARER", Username: testUser, TokenSource: r, Renew: r.Renew},
	})
	defer tr.Close()
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	be.mu.Lock()
	defer be.mu.Unlock()
	if !slices.Equal(be.tokens, []string{"tok-stale", "tok-fresh"}) || be.user != testUser || be.bodies != 1 {
		t.Errorf("server saw tokens %q, user %q, %d messages; want tok-stale then tok-fresh, %s, 1", be.tokens, be.user, be.bodies, testUser)
	}
	if n := len(ep.calls()); n != 2 {
		t.Errorf("%d token refreshes, want 2", n)
	}
}

type bearerBackend struct {
	token  string
	mu     sync.Mutex
	tokens []string // as presented, in order
	user   string
	bodies int
}

func (b *bearerBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &bearerSession{b}, nil }

type bearerSession struct{ b *bearerBackend }

func (s *bearerSession) AuthMechanisms() []string { return []string{sasl.OAuthBearer} }

func (s *bearerSession) Auth(string) (sasl.Server, error) {
	return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		s.b.mu.Lock()
		defer s.b.mu.Unlock()
		s.b.tokens = append(s.b.tokens, o.Token)
		if o.Token != s.b.token {
			return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
		}
		s.b.user = o.Username
		return nil
	}), nil
}

func (s *bearerSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *bearerSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *bearerSession) Reset()                               {}
func (s *bearerSession) Logout() error                        { return nil }

func (s *bearerSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.bodies++
	s.b.mu.Unlock()
	return nil
}
