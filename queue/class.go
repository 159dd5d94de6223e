package queue

import (
	"fmt"
	"strconv"
	"strings"
)

// ReplyClass selects replies by code, for requeueing every dead letter that
// died on, say, an authentication error once the credentials are fixed. The
// zero ReplyClass matches every reply.
type ReplyClass struct {
	pattern  string
	enhanced bool     // an enhanced status code pattern, else a basic code
	parts    []string // enhanced: "5", "7", "x"; basic: "5", "5", "x"
}

// ParseReplyClass reads a reply class:
//
//   - an enhanced status code pattern (RFC 3463): "5.7.1", "5.7.x", "5.x.x",
//     or shorter, "5.7" or "5", with the missing parts matching anything;
//     "*" may stand for "x". A reply without an enhanced code matches when
//     its basic code has the class digit and the rest of the pattern is
//     wildcards.
//   - a basic reply code pattern: "550", "55x", "5xx".
func ParseReplyClass(s string) (ReplyClass, error) {
	c := ReplyClass{pattern: s}
	p := strings.ToLower(strings.ReplaceAll(s, "*", "x"))
	if len(p) == 3 && !strings.Contains(p, ".") {
		for _, ch := range p {
			if ch != 'x' && (ch < '0' || ch > '9') {
				return ReplyClass{}, fmt.Errorf("%w %q: a basic code pattern is three digits or x, like 55x", ErrBadClass, s)
			}
			c.parts = append(c.parts, string(ch))
		}
		if c.parts[0] != "2" && c.parts[0] != "4" && c.parts[0] != "5" {
			return ReplyClass{}, fmt.Errorf("%w %q: a reply code starts with 2, 4 or 5", ErrBadClass, s)
		}
		return c, nil
	}
	c.enhanced = true
	c.parts = strings.Split(p, ".")
	if len(c.parts) > 3 {
		return ReplyClass{}, fmt.Errorf("%w %q: an enhanced code has three parts, like 5.7.1", ErrBadClass, s)
	}
	if c.parts[0] != "2" && c.parts[0] != "4" && c.parts[0] != "5" {
		return ReplyClass{}, fmt.Errorf("%w %q: the class is 2, 4 or 5", ErrBadClass, s)
	}
	for _, part := range c.parts[1:] {
		if part == "x" {
			continue
		}
		if n, err := strconv.Atoi(part); err != nil || n < 0 || n > 999 || len(part) > 3 {
			return ReplyClass{}, fmt.Errorf("%w %q: %q is not a number of 1 to 3 digits or x", ErrBadClass, s, part)
		}
	}
	return c, nil
}

// String returns the pattern as parsed, "*" for the zero class.
func (c ReplyClass) String() string {
	if c.pattern == "" {
		return "*"
	}
	return c.pattern
}

// IsZero reports whether c is the zero class, which matches every reply.
func (c ReplyClass) IsZero() bool { return c.parts == nil }

// Match reports whether r is in the class. A nil reply matches only the
// zero class.
func (c ReplyClass) Match(r *Reply) bool {
	if c.IsZero() {
		return true
	}
	if r == nil {
		return false
	}
	if !c.enhanced {
		code := strconv.Itoa(r.Code)
		if len(code) != 3 {
			return false
		}
		for i, part := range c.parts {
			if part != "x" && part[0] != code[i] {
				return false
			}
		}
		return true
	}
	if r.Enhanced == "" {
		if strconv.Itoa(r.Code/100) != c.parts[0] {
			return false
		}
		for _, part := range c.parts[1:] {
			if part != "x" {
				return false
			}
		}
		return true
	}
	got := strings.Split(r.Enhanced, ".")
	for i, part := range c.parts {
		if part == "x" {
			continue
		}
		if i >= len(got) {
			return false
		}
		want, _ := strconv.Atoi(part)
		if n, err := strconv.Atoi(got[i]); err != nil || n != want {
			return false
		}
	}
	return true
}

// recipients returns the addresses of rs whose last reply is in c.
func (c ReplyClass) recipients(rs []Recipient) []string {
	var out []string
	for _, r := range rs {
		if c.Match(r.LastReply) {
			out = append(out, r.Address)
		}
	}
	return out
}
