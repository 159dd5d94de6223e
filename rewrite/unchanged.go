package rewrite

import (
	"bytes"
	"strings"
)

// Most messages leave Message's header rules with nothing to do: the
// [defaults] fields are there and the From address is already qualified.
// keepsHeader finds that out in one pass over the header's lines, without
// parsing the header into fields or the From field with net/mail (which
// cost a dozen allocations a message at intake). It answers true only
// when rewriteHeader would return the message as it is; anything it does
// not read with certainty (a folded or non-ASCII From, several addresses,
// comments, quoting inside the address) goes the full way
// (TestKeepsHeaderAgreesWithRewrite).

// keepsHeader reports that rewriteHeader would change nothing in msg:
// every Defaults field is present and the From address, when there is a
// From, is one rewriteFrom leaves as it is.
func (r *Rules) keepsHeader(msg []byte) bool {
	if len(r.opts.Defaults) == 0 && r.fromNeverChanges() {
		return true
	}
	var from []byte                // the first From field's bytes
	seen := 0                      // Defaults found, as a bit set
	if len(r.opts.Defaults) > 63 { // more than seen holds: read them the full way
		return false
	}
	for rest := msg; len(rest) > 0; {
		name, raw, ok := nextField(rest)
		if !ok {
			break
		}
		rest = rest[len(raw):]
		if from == nil && equalFold(name, "From") {
			from = raw
		}
		for i, d := range r.opts.Defaults {
			if equalFold(name, d.Name) {
				seen |= 1 << i
			}
		}
	}
	if seen != 1<<len(r.opts.Defaults)-1 {
		return false
	}
	if from == nil {
		return true
	}
	addr, ok := simpleFrom(from[len("From:"):])
	if !ok {
		return false
	}
	was := string(addr)
	got, _ := r.fromAddress(was)
	return got == was
}

// fromNeverChanges: no address of a From field can change, whatever it is.
func (r *Rules) fromNeverChanges() bool {
	return r.opts.Domain == "" && len(r.opts.Masquerade) == 0 && r.opts.FromHeader == ""
}

func equalFold(b []byte, s string) bool {
	return len(b) == len(s) && strings.EqualFold(string(b), s)
}

// simpleFrom reads a From field's value (after the colon, up to and
// including its CRLF) of one of the forms
//
//	local@domain
//	Display Name <local@domain>
//	"Display Name" <local@domain>
//
// in ASCII, on one line, and returns local@domain as net/mail would.
// ok is false for any other form, which net/mail is left to read.
func simpleFrom(v []byte) (addr []byte, ok bool) {
	v, ok = bytes.CutSuffix(v, []byte("\r\n"))
	if !ok {
		return nil, false
	}
	v = bytes.Trim(v, " \t")
	if len(v) == 0 || v[len(v)-1] != '>' {
		return v, addrSpec(v)
	}
	lt := bytes.LastIndexByte(v, '<')
	if lt < 0 {
		return nil, false
	}
	addr, name := v[lt+1:len(v)-1], bytes.TrimRight(v[:lt], " \t")
	return addr, addrSpec(addr) && displayName(name)
}

// addrSpec: local@domain, the local part in atext and dots, the domain in
// letters, digits, hyphens and dots.
func addrSpec(a []byte) bool {
	at := bytes.IndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return false
	}
	for _, c := range a[:at] {
		if c != '.' && !atext(c) {
			return false
		}
	}
	for _, c := range a[at+1:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// displayName: empty, words of atext and dots separated by spaces, or one
// quoted string without quotes or backslashes inside.
func displayName(n []byte) bool {
	if q, ok := bytes.CutPrefix(n, []byte(`"`)); ok {
		q, ok = bytes.CutSuffix(q, []byte(`"`))
		return ok && bytes.IndexFunc(q, func(c rune) bool { return c < ' ' || c > '~' || c == '"' || c == '\\' }) < 0
	}
	for _, c := range n {
		if c != ' ' && c != '.' && !atext(c) {
			return false
		}
	}
	return true
}

// atext is an RFC 5322 atext character in ASCII.
func atext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
