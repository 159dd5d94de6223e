package transport

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// TokenRefresher hands out OAuth2 access tokens obtained with a refresh
// token (the "refresh_token" grant at Config.Endpoint.TokenURL), for
// Auth.TokenSource. It is golang.org/x/oauth2's own refreshing source
// (Config.TokenSource in a ReuseTokenSourceWithExpiry), plus Renew, which
// throws away a token the relay rejected before it has expired. A new
// refresh token the server sends (Microsoft rotates them) replaces the old
// one, in memory. It is safe for concurrent use.
type TokenRefresher struct {
	ctx   context.Context
	conf  *oauth2.Config
	early time.Duration

	mu      sync.Mutex
	src     oauth2.TokenSource
	first   string        // the refresh token configured
	refresh string        // the latest refresh token
	last    *oauth2.Token // the last token handed out
}

// NewTokenRefresher returns a TokenRefresher that gets a new access token
// early before the current one expires (a token with no expiry is kept
// until it is rejected). The token requests go through client (nil:
// http.DefaultClient), which should have a Timeout. When conf.Scopes is
// set, the scopes are sent with every refresh (as "scope"), which
// golang.org/x/oauth2 does not do and Microsoft's endpoint asks for.
func NewTokenRefresher(conf *oauth2.Config, refreshToken string, client *http.Client, early time.Duration) *TokenRefresher {
	if client == nil {
		client = http.DefaultClient
	}
	if len(conf.Scopes) > 0 {
		c := *client
		base := c.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		c.Transport = &scopeTransport{base: base, scope: strings.Join(conf.Scopes, " ")}
		client = &c
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
	r := &TokenRefresher{ctx: ctx, conf: conf, early: early, first: refreshToken, refresh: refreshToken}
	r.src = r.newSource()
	return r
}

func (r *TokenRefresher) newSource() oauth2.TokenSource {
	// A token with a refresh token and no access token is invalid, so the
	// first Token call refreshes it.
	return oauth2.ReuseTokenSourceWithExpiry(nil, r.conf.TokenSource(r.ctx, &oauth2.Token{RefreshToken: r.refresh}), r.early)
}

// Token returns the current access token, refreshing it first when it
// expires within the early margin or was renewed.
func (r *TokenRefresher) Token() (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tok, err := r.src.Token()
	if err != nil {
		// The endpoint's error (x/oauth2's RetrieveError holds its whole
		// answer) may quote the client secret or the refresh token.
		return nil, scrubError(err, r.secretsLocked())
	}
	if tok.RefreshToken != "" {
		r.refresh = tok.RefreshToken
	}
	r.last = tok
	return tok, nil
}

// secrets lists what the refresher holds that must never be shown: the
// client secret, the refresh tokens and the last access token.
func (r *TokenRefresher) secrets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.secretsLocked()
}

func (r *TokenRefresher) secretsLocked() []string {
	s := make([]string, 0, 4)
	for _, v := range []string{r.conf.ClientSecret, r.first, r.refresh} {
		if v != "" && !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	if r.last != nil && r.last.AccessToken != "" {
		s = append(s, r.last.AccessToken)
	}
	return s
}

// Renew makes the next Token call fetch a new access token, unless the
// rejected one was already replaced (by another connection's Renew).
func (r *TokenRefresher) Renew(rejected *oauth2.Token) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rejected != nil && r.last != nil && rejected.AccessToken != r.last.AccessToken {
		return
	}
	r.src, r.last = r.newSource(), nil
}

// scopeTransport adds "scope" to refresh_token grant requests that have
// none.
type scopeTransport struct {
	base  http.RoundTripper
	scope string
}

func (s *scopeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil {
		return s.base.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err == nil && form.Get("grant_type") == "refresh_token" && form.Get("scope") == "" {
		form.Set("scope", s.scope)
		body = []byte(form.Encode())
	}
	r := req.Clone(req.Context())
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return s.base.RoundTrip(r)
}
