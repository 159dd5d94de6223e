package smtptest

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
)

// Error challenges sent for a refused token: Gmail's for XOAUTH2, RFC 7628
// §3.2.2's for OAUTHBEARER.
const (
	xoauth2Refusal     = `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`
	oauthBearerRefusal = `{"status":"invalid_token","schemes":"bearer","scope":"https://mail.google.com/"}`
)

// saslExchange runs the exchange of mech after "AUTH mech [ir]". It
// returns the user, whether the credentials are good (else the reply is
// 535), and ok false when the client cancelled or sent something malformed
// (501).
func (ss *session) saslExchange(mech, ir string) (user string, good, ok bool) {
	switch mech {
	case "PLAIN":
		user, pass, ok := ss.authPlain(ir)
		return user, ok && ss.srv.password(user, pass), ok
	case "LOGIN":
		user, pass, ok := ss.authLogin(ir)
		return user, ok && ss.srv.password(user, pass), ok
	case "CRAM-MD5":
		return ss.authCRAMMD5(ir)
	case "XOAUTH2":
		return ss.authXOAuth2(ir)
	case "OAUTHBEARER":
		return ss.authOAuthBearer(ir)
	}
	return "", false, false
}

func (s *Server) password(user, pass string) bool {
	want, known := s.opts.Auth[user]
	return known && want == pass
}

func (s *Server) token(user, token string) bool {
	want, known := s.opts.Tokens[user]
	return known && want == token
}

// authCRAMMD5 is RFC 2195: a challenge, answered with the user and the
// HMAC-MD5 of the challenge keyed with the password, in hex.
func (ss *session) authCRAMMD5(ir string) (string, bool, bool) {
	if ir != "" {
		return "", false, false // CRAM-MD5 has no initial response
	}
	challenge := fmt.Sprintf("<%d.%d@%s>", ss.id, ss.n, ss.srv.opts.Domain)
	resp, ok := ss.challenge("", challenge)
	if !ok {
		return "", false, false
	}
	user, digest, ok := strings.Cut(string(resp), " ")
	if !ok {
		return "", false, false
	}
	pass, known := ss.srv.opts.Auth[user]
	mac := hmac.New(md5.New, []byte(pass))
	mac.Write([]byte(challenge))
	return user, known && hmac.Equal([]byte(digest), []byte(hex.EncodeToString(mac.Sum(nil)))), true
}

// authXOAuth2 takes "user=U^Aauth=Bearer T^A^A".
func (ss *session) authXOAuth2(ir string) (string, bool, bool) {
	resp, ok := ss.challenge(ir, "")
	if !ok {
		return "", false, false
	}
	var user, token string
	for _, kv := range bytes.Split(resp, []byte{1}) {
		k, v, _ := strings.Cut(string(kv), "=")
		switch k {
		case "user":
			user = v
		case "auth":
			token, ok = strings.CutPrefix(v, "Bearer ")
		}
	}
	if user == "" || !ok {
		return "", false, false
	}
	if ss.srv.token(user, token) {
		return user, true, true
	}
	_, ok = ss.challenge("", xoauth2Refusal) // the client answers with an empty line
	return user, false, ok
}

// authOAuthBearer takes RFC 7628's "n,a=U,^Ahost=H^Aport=P^Aauth=Bearer
// T^A^A"; after a refused token, the client must answer the error
// challenge with ^A.
func (ss *session) authOAuthBearer(ir string) (string, bool, bool) {
	resp, ok := ss.challenge(ir, "")
	if !ok {
		return "", false, false
	}
	gs2, rest, found := strings.Cut(string(resp), "\x01")
	fields := strings.Split(gs2, ",")
	if !found || len(fields) < 2 || fields[0] != "n" {
		return "", false, false
	}
	user, _ := strings.CutPrefix(fields[1], "a=")
	var token string
	for kv := range strings.SplitSeq(rest, "\x01") {
		if v, isAuth := strings.CutPrefix(kv, "auth="); isAuth {
			token, ok = strings.CutPrefix(v, "Bearer ")
		}
	}
	if !ok {
		return "", false, false
	}
	if ss.srv.token(user, token) {
		return user, true, true
	}
	answer, ok := ss.challenge("", oauthBearerRefusal)
	return user, false, ok && bytes.Equal(answer, []byte{1})
}
