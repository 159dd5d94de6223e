package transport

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// A relay may echo a credential back in a reply ("535 5.7.8 AUTH PLAIN
// AHVzZXIA… rejected"), and an OAuth2 token endpoint may quote the client
// secret or the refresh token in its error. Whatever transport reports of
// them (the replies in its errors and results, transcripts, the
// conversation log, Verify's report) passes through secrets.scrub, which
// replaces every secret transport knows with redactedLine, in each form it
// may come back in:
//
//   - as it is, URL-encoded (query and path escaping) and JSON-escaped;
//   - in base64 (standard and URL alphabets, padded or not), alone or
//     inside any longer base64 text, such as a SASL PLAIN or XOAUTH2
//     response: for each of the three alignments a secret can have in the
//     encoded bytes, the characters that depend on the secret alone.
//
// A secret shorter than minSecret is only scrubbed inside the SASL
// responses relayq sends (PLAIN, XOAUTH2), which are long enough: replacing
// every occurrence of two or three characters would mangle the text.
const minSecret = 4

// maxTokens bounds how many OAuth2 access tokens handed to relays are
// remembered: tokens expire and are replaced, usually every hour.
const maxTokens = 4

// secrets knows the credentials of a Transport and scrubs them. It is safe
// for concurrent use.
type secrets struct {
	user      string
	static    []string        // password, proxy password
	refresher *TokenRefresher // client secret, refresh and access tokens; nil when none

	mu     sync.Mutex
	tokens []string          // access tokens given to relays, latest last
	known  []string          // the secrets r was built from
	r      *strings.Replacer // nil when there is no secret
}

func newSecrets(o *Options) *secrets {
	s := &secrets{user: o.Auth.Username}
	if o.Auth.Password != "" {
		s.static = append(s.static, o.Auth.Password)
	}
	if o.Proxy != nil && o.Proxy.User != nil {
		if p, ok := o.Proxy.User.Password(); ok && p != "" {
			s.static = append(s.static, p)
		}
	}
	s.refresher, _ = o.Auth.TokenSource.(*TokenRefresher)
	return s
}

// addToken remembers an access token given to a relay.
func (s *secrets) addToken(tok string) {
	if tok == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.tokens, tok) {
		return
	}
	s.tokens = append(s.tokens, tok)
	if len(s.tokens) > maxTokens {
		s.tokens = slices.Delete(s.tokens, 0, len(s.tokens)-maxTokens)
	}
}

// scrub returns text with every secret replaced.
func (s *secrets) scrub(text string) string {
	if r := s.replacer(); r != nil && text != "" {
		return r.Replace(text)
	}
	return text
}

// scrubBytes is scrub for a line the wire sees; it returns line itself
// when there is nothing to replace.
func (s *secrets) scrubBytes(line []byte) []byte {
	r := s.replacer()
	if r == nil {
		return line
	}
	if out := r.Replace(string(line)); len(out) != len(line) || out != string(line) {
		return []byte(out)
	}
	return line
}

// replacer returns the Replacer for the secrets known now, building it
// again when they changed (a new access or refresh token).
func (s *secrets) replacer() *strings.Replacer {
	if s == nil {
		return nil
	}
	var dynamic []string
	if s.refresher != nil {
		dynamic = s.refresher.secrets()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	all := slices.Concat(s.static, dynamic, s.tokens)
	if slices.Equal(all, s.known) {
		return s.r
	}
	s.known = all
	s.r = nil
	if len(all) > 0 {
		s.r = newScrubber(s.user, all)
	}
	return s.r
}

// newScrubber returns a Replacer of every form of secrets (secretForms),
// longest first, so that a longer form wins over one it contains.
func newScrubber(user string, secrets []string) *strings.Replacer {
	var forms []string
	for _, sec := range secrets {
		forms = append(forms, secretForms(user, sec)...)
	}
	slices.SortFunc(forms, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	forms = slices.Compact(forms)
	if len(forms) == 0 {
		return nil
	}
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, redactedLine)
	}
	return strings.NewReplacer(pairs...)
}

// secretForms lists the forms secret may be echoed in.
func secretForms(user, secret string) []string {
	if secret == "" {
		return nil
	}
	var forms []string
	// The SASL responses relayq sends: PLAIN (RFC 4616, no authorization
	// identity) and XOAUTH2, whole.
	for _, resp := range []string{"\x00" + user + "\x00" + secret, "user=" + user + "\x01auth=Bearer " + secret + "\x01\x01"} {
		forms = append(forms, base64.StdEncoding.EncodeToString([]byte(resp)), base64.RawStdEncoding.EncodeToString([]byte(resp)))
	}
	if len(secret) < minSecret {
		return forms
	}
	forms = append(forms, secret, url.QueryEscape(secret), url.PathEscape(secret))
	if j, err := json.Marshal(secret); err == nil {
		escaped := string(j[1 : len(j)-1])
		forms = append(forms, escaped, strings.ReplaceAll(escaped, "/", `\/`))
	}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		forms = append(forms, base64Cores(enc, secret)...)
	}
	return forms
}

// base64Cores returns, for each offset (0, 1, 2) the secret may start at in
// a base64-encoded text, the characters of the encoding that depend on the
// secret's bytes alone: they appear in any encoding of a text holding the
// secret at that offset, whatever surrounds it.
func base64Cores(enc *base64.Encoding, secret string) []string {
	var cores []string
	for k := range 3 {
		full := enc.EncodeToString(append(make([]byte, k), secret...))
		// k leading bytes fill k*8 bits: the first ceil(k*8/6) characters
		// hold some of them; the characters whose 6 bits all come from the
		// secret follow, up to the last one entirely within it.
		start := (k*8 + 5) / 6
		end := (k + len(secret)) * 8 / 6
		if end-start >= minSecret {
			cores = append(cores, full[start:end])
		}
	}
	return cores
}

// scrubError returns err with secrets scrubbed out of its text (wrapped,
// so that errors.Is and errors.As still see through it), or err itself
// when its text holds none.
func scrubError(err error, secrets []string) error {
	r := newScrubber("", secrets)
	if err == nil || r == nil {
		return err
	}
	msg := err.Error()
	if clean := r.Replace(msg); clean != msg {
		return &cleanError{msg: clean, err: err}
	}
	return err
}
