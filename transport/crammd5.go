package transport

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
)

// cramMD5Client is the CRAM-MD5 mechanism (RFC 2195), which go-sasl does
// not have: the relay sends a challenge, the client answers
// "{user} {hex HMAC-MD5 of the challenge keyed with the password}". The
// password itself never crosses the wire, which is why authenticate
// prefers it on a connection without TLS.
type cramMD5Client struct {
	user, pass string
	done       bool
}

func (a *cramMD5Client) Start() (string, []byte, error) {
	a.done = false
	return MechCRAMMD5, nil, nil
}

func (a *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	if a.done {
		return nil, errors.New("CRAM-MD5: unexpected second challenge from the relay")
	}
	a.done = true
	d := hmac.New(md5.New, []byte(a.pass))
	d.Write(challenge)
	return []byte(a.user + " " + hex.EncodeToString(d.Sum(nil))), nil
}
