package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"relayq/config"
	"relayq/transport"
)

// tokenEarly is how long before its expiry an access token is refreshed,
// so that a token is never presented in its last seconds (or to a relay
// whose clock runs ahead).
const tokenEarly = time.Minute

// relayAuth turns [relay.auth] into transport.Auth (the config loader has
// checked the combination and read the secrets). Token requests time out
// after timeout.
func relayAuth(a config.AuthConfig, timeout time.Duration) (transport.Auth, error) {
	if a.User == "" {
		return transport.Auth{}, nil
	}
	auth := transport.Auth{Mechanism: a.Method, Username: a.User}
	if a.Type != config.AuthOAuth2 {
		auth.Password = a.Pass
		return auth, nil
	}
	switch {
	case a.AccessTokenFile != "":
		auth.TokenSource = tokenFile(a.AccessTokenFile)
	case a.AccessToken != "":
		auth.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: a.AccessToken})
	case a.RefreshToken != "":
		conf := &oauth2.Config{
			ClientID:     a.ClientID,
			ClientSecret: a.ClientSecret,
			Endpoint:     oauth2.Endpoint{TokenURL: a.TokenURL},
			Scopes:       a.Scopes,
		}
		r := transport.NewTokenRefresher(conf, a.RefreshToken, &http.Client{Timeout: timeout}, tokenEarly)
		auth.TokenSource, auth.Renew = r, r.Renew
	default:
		return auth, fmt.Errorf("relay.auth: type %q has no token", a.Type)
	}
	return auth, nil
}

// tokenFile is relay.auth.access_token_file: read again at every AUTH, so
// that another program can keep the token fresh.
type tokenFile string

func (f tokenFile) Token() (*oauth2.Token, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("relay.auth.access_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("relay.auth.access_token_file: %s is empty", string(f))
	}
	return &oauth2.Token{AccessToken: tok}, nil
}
