package transport

import (
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
)

// authenticate runs AUTH with PLAIN, else LOGIN, whichever the relay
// offers. Credentials never go out on a connection without TLS unless
// AllowInsecureAuth says so; that is checked before anything is sent.
func (t *Transport) authenticate(c *conn) error {
	if !c.tls && !t.opts.AllowInsecureAuth {
		return ErrInsecureAuth
	}
	ok, mechs := c.client.Extension("AUTH")
	if !ok {
		return fmt.Errorf("%w: it does not offer AUTH", ErrAuthUnavailable)
	}
	var client sasl.Client
	var mech string
	switch {
	case c.client.SupportsAuth(sasl.Plain):
		client, mech = sasl.NewPlainClient("", t.opts.Username, t.opts.Password), sasl.Plain
	case c.client.SupportsAuth(sasl.Login):
		client, mech = &loginClient{user: t.opts.Username, pass: t.opts.Password}, sasl.Login
	default:
		return fmt.Errorf("%w: it offers %q", ErrAuthUnavailable, mechs)
	}
	if err := c.client.Auth(client); err != nil {
		t.log.Debug("relay AUTH failed", "conn", c.id, "mechanism", mech, "user", t.opts.Username, "err", err)
		return err
	}
	t.log.Debug("relay AUTH succeeded", "conn", c.id, "mechanism", mech, "user", t.opts.Username)
	return nil
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
