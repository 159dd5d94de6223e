package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/oauth2"
)

// SASL mechanism names, as the relay lists them after AUTH in its EHLO
// reply.
const (
	MechPlain       = sasl.Plain       // RFC 4616
	MechLogin       = sasl.Login       // draft-murchison-sasl-login
	MechCRAMMD5     = "CRAM-MD5"       // RFC 2195
	MechXOAuth2     = "XOAUTH2"        // Google's and Microsoft's OAuth2 mechanism
	MechOAuthBearer = sasl.OAuthBearer // RFC 7628
)

// Without a configured Mechanism, authenticate takes the first of these
// lists that the relay offers.
var (
	// Over TLS the password is safe on the wire, and PLAIN is the standard
	// mechanism, with the simplest exchange; LOGIN is the same secret in
	// two steps; CRAM-MD5 last, because it makes the relay keep the
	// password in a recoverable form and some relays disable it.
	passwordOverTLS = []string{MechPlain, MechLogin, MechCRAMMD5}
	// Without TLS (allowed only for a loopback relay), CRAM-MD5 comes
	// first: it is the only one that does not put the password on the wire.
	passwordInClear = []string{MechCRAMMD5, MechPlain, MechLogin}
	// XOAUTH2 first: it is what Gmail and Microsoft 365 document, and the
	// only OAuth2 mechanism smtp.office365.com offers; OAUTHBEARER, the
	// standard, for relays that offer only it.
	tokenMechanisms = []string{MechXOAuth2, MechOAuthBearer}
)

// Auth holds the credentials for AUTH. With an empty Username no AUTH is
// done.
type Auth struct {
	// Mechanism is the SASL mechanism to use (PLAIN, LOGIN, CRAM-MD5,
	// XOAUTH2, OAUTHBEARER; any case). "" picks the first the relay
	// offers: for a password PLAIN, LOGIN, CRAM-MD5 over TLS (CRAM-MD5
	// first in clear); for a token XOAUTH2, then OAUTHBEARER. A set
	// Mechanism the relay does not offer fails the session (StageAuth,
	// ErrAuthUnavailable) naming the mechanisms it does offer.
	Mechanism string
	Username  string
	// Password is for PLAIN, LOGIN and CRAM-MD5.
	Password string
	// TokenSource, when set, makes this OAuth2 authentication (XOAUTH2,
	// OAUTHBEARER) with its access token, and Password is not used. It is
	// asked at every AUTH, so it should cache tokens (NewTokenRefresher,
	// oauth2.ReuseTokenSource).
	TokenSource oauth2.TokenSource
	// Renew, when set, is called with the token a relay rejected (535, or
	// an error challenge); it should make TokenSource's next token a new
	// one. AUTH is then tried once more, on a new connection.
	// TokenRefresher.Renew does this.
	Renew func(rejected *oauth2.Token)
}

// dial opens a relay session ready for MAIL (dialOnce). When the relay
// rejected the OAuth2 access token and Auth.Renew is set, the token is
// renewed and the session opened once more, on a fresh connection: an
// access token can be revoked or expire early, and a relay may not take a
// second AUTH after a failed one.
func (t *Transport) dial(ctx context.Context) (*conn, error) {
	c, err := t.dialOnce(ctx)
	var rej *tokenRejection
	if err == nil || t.opts.Auth.Renew == nil || !errors.As(err, &rej) {
		return c, err
	}
	t.log.Debug("relay rejected the OAuth2 access token; renewing it and trying once more",
		"relay", t.opts.Address, "mechanism", rej.mech, "err", err)
	t.opts.Auth.Renew(rej.token)
	return t.dialOnce(ctx)
}

// authenticate runs AUTH with the configured mechanism, or the best one
// the relay offers, and returns the mechanism it chose (also when AUTH
// failed after it was chosen). Credentials never go out on a connection
// without TLS unless AllowInsecureAuth says so; that is checked before
// anything is sent. A token the relay rejected is reported as a
// *tokenRejection (errors.Is(err, ErrTokenRejected)) that still holds the
// relay's reply.
func (t *Transport) authenticate(c *conn) (string, error) {
	if !c.tls && !t.opts.AllowInsecureAuth {
		return "", ErrInsecureAuth
	}
	ok, offered := c.client.Extension("AUTH")
	if !ok {
		return "", fmt.Errorf("%w: it does not offer AUTH", ErrAuthUnavailable)
	}
	mech, err := t.chooseMechanism(strings.Fields(offered), c.tls)
	if err != nil {
		return "", err
	}
	a := t.opts.Auth
	var client sasl.Client
	var tok *oauth2.Token
	if a.TokenSource != nil {
		if tok, err = a.TokenSource.Token(); err != nil {
			return mech, t.cleanErr(fmt.Errorf("getting an OAuth2 access token: %w", err))
		}
		t.secrets.addToken(tok.AccessToken)
		client = t.tokenClient(mech, tok.AccessToken)
	} else {
		client = passwordClient(mech, a.Username, a.Password)
	}
	log := t.log.With("conn", c.id, "mechanism", mech, "user", a.Username)
	if err := c.client.Auth(client); err != nil {
		if tok != nil {
			err = tokenError(mech, tok, client, err)
		}
		err = t.cleanErr(err)
		log.Debug("relay AUTH failed", "err", err)
		return mech, err
	}
	log.Debug("relay AUTH succeeded")
	return mech, nil
}

// chooseMechanism picks the configured mechanism if the relay offers it,
// else the first of the preference list for the credentials it offers.
func (t *Transport) chooseMechanism(offered []string, tls bool) (string, error) {
	has := func(m string) bool {
		return slices.ContainsFunc(offered, func(o string) bool { return strings.EqualFold(o, m) })
	}
	if m := strings.ToUpper(t.opts.Auth.Mechanism); m != "" {
		if !has(m) {
			return "", fmt.Errorf("%w: %s is configured, but the relay offers only %s",
				ErrAuthUnavailable, m, strings.Join(offered, " "))
		}
		return m, nil
	}
	prefs, kind := passwordOverTLS, "a password"
	switch {
	case t.opts.Auth.TokenSource != nil:
		prefs, kind = tokenMechanisms, "an OAuth2 token"
	case !tls:
		prefs = passwordInClear
	}
	for _, m := range prefs {
		if has(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w: none of %s takes %s; the relay offers %s",
		ErrAuthUnavailable, strings.Join(prefs, " "), kind, strings.Join(offered, " "))
}

// passwordClient returns the SASL client for a password mechanism.
func passwordClient(mech, user, pass string) sasl.Client {
	switch mech {
	case MechLogin:
		return &loginClient{user: user, pass: pass}
	case MechCRAMMD5:
		return &cramMD5Client{user: user, pass: pass}
	case MechPlain:
		return sasl.NewPlainClient("", user, pass)
	}
	return &refusingClient{mech: mech, need: "an OAuth2 token"}
}

// tokenClient returns the SASL client for an OAuth2 mechanism.
func (t *Transport) tokenClient(mech, token string) sasl.Client {
	user := t.opts.Auth.Username
	switch mech {
	case MechXOAuth2:
		return &xoauth2Client{user: user, token: token}
	case MechOAuthBearer:
		opts := &sasl.OAuthBearerOptions{Username: user, Token: token}
		if host, port, err := net.SplitHostPort(t.opts.Address); err == nil && t.opts.Network == "tcp" {
			opts.Host = host
			opts.Port, _ = strconv.Atoi(port)
		}
		return &oauthBearerClient{Client: sasl.NewOAuthBearerClient(opts)}
	}
	return &refusingClient{mech: mech, need: "a password"}
}

// refusingClient stands for a configured mechanism that does not fit the
// credentials (which the config check prevents): it fails before anything
// is sent.
type refusingClient struct{ mech, need string }

func (r *refusingClient) Start() (string, []byte, error) {
	return "", nil, fmt.Errorf("%w: %s needs %s", ErrAuthUnavailable, r.mech, r.need)
}

func (r *refusingClient) Next([]byte) ([]byte, error) { return nil, errors.New("unreachable") }

// rejecter is an OAuth2 client that keeps the error challenge a relay sent
// (XOAUTH2, OAUTHBEARER).
type rejecter interface{ rejection() []byte }

// tokenRejection is an AUTH that failed because the relay did not take the
// access token: it answered 535, or sent an error challenge.
type tokenRejection struct {
	mech   string
	token  *oauth2.Token
	status string // from the error challenge, e.g. "401" or "invalid_token"
	err    error  // the relay's reply
}

func (e *tokenRejection) Error() string {
	s := "the relay rejected the OAuth2 access token"
	if e.status != "" {
		s += " (status " + e.status + ")"
	}
	return s + ": " + e.err.Error()
}

func (e *tokenRejection) Unwrap() error { return e.err }

func (e *tokenRejection) Is(target error) bool { return target == ErrTokenRejected }

// tokenError turns a failed OAuth2 AUTH into a *tokenRejection when the
// relay refused the token (535, or an error challenge); other failures
// (454 temporary, broken connection) are returned as they are.
func tokenError(mech string, tok *oauth2.Token, client sasl.Client, err error) error {
	var challenge []byte
	if r, ok := client.(rejecter); ok {
		challenge = r.rejection()
	}
	var se *smtp.SMTPError
	if challenge == nil && !(errors.As(err, &se) && se.Code == 535) {
		return err
	}
	var body struct {
		Status string `json:"status"`
	}
	json.Unmarshal(challenge, &body) // best effort: the status is only shown
	return &tokenRejection{mech: mech, token: tok, status: body.Status, err: err}
}

// loginClient is the LOGIN mechanism answering its challenges by position
// (user name, then password) whatever their text. go-sasl's LOGIN client
// sends the user name as an initial response and then insists that the
// challenge be exactly "Password:", which fails against relays that use
// the two-step "Username:" exchange or other prompts.
type loginClient struct {
	user, pass string
	step       int
}

func (a *loginClient) Start() (string, []byte, error) {
	a.step = 0
	return sasl.Login, nil, nil
}

func (a *loginClient) Next(challenge []byte) ([]byte, error) {
	a.step++
	switch a.step {
	case 1:
		return []byte(a.user), nil
	case 2:
		return []byte(a.pass), nil
	}
	return nil, errors.New("LOGIN: unexpected third challenge from the relay")
}
