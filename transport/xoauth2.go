package transport

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// xoauth2Client is the XOAUTH2 mechanism of Gmail and Microsoft 365
// (developers.google.com/gmail/imap/xoauth2-protocol), which go-sasl
// dropped in 2020. The initial response is
//
//	user={user}^Aauth=Bearer {token}^A^A
//
// A relay that refuses the token answers with a 334 challenge holding a
// base64 JSON error ({"status":"401",…}); the client must answer it with an
// empty line, and the relay then sends its final 535.
type xoauth2Client struct {
	user, token string
	challenge   []byte // the error challenge, once received
}

func (a *xoauth2Client) Start() (string, []byte, error) {
	a.challenge = nil
	return MechXOAuth2, []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

func (a *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if a.challenge != nil {
		return nil, errors.New("XOAUTH2: unexpected second challenge from the relay")
	}
	a.challenge = append([]byte{}, challenge...)
	return []byte{}, nil // empty, not nil: go-smtp sends an empty line
}

func (a *xoauth2Client) rejection() []byte { return a.challenge }

// oauthBearerClient is go-sasl's OAUTHBEARER client (RFC 7628) with the
// failure exchange done as the RFC says (§3.2.3): after the relay's error
// challenge the client sends the dummy response %x01 and the relay ends
// the exchange with its 535. go-sasl's client instead fails on the
// challenge, so go-smtp cancels with "*" and the relay's reply is lost.
type oauthBearerClient struct {
	sasl.Client
	challenge []byte
}

func (a *oauthBearerClient) Start() (string, []byte, error) {
	a.challenge = nil
	return a.Client.Start()
}

func (a *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if a.challenge != nil {
		return nil, errors.New("OAUTHBEARER: unexpected second challenge from the relay")
	}
	a.challenge = append([]byte{}, challenge...)
	return []byte{0x01}, nil
}

func (a *oauthBearerClient) rejection() []byte { return a.challenge }
