package spool

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RFC 5321 §4.5.3.1 limits.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 254 // 256 for the path, less the angle brackets
)

// checkAddress reports whether a is a mailbox relayq will queue: local@domain
// with a dot-atom local part (ASCII atext, or UTF-8 for SMTPUTF8) and a
// domain name or address literal, within RFC 5321's lengths.
//
// It is stricter than RFC 5321 on purpose. Quoted local parts are refused:
// go-smtp's server hands them over unquoted, and an address with a space or
// an angle bracket in it could not be sent on safely. A local part that
// starts with '-' is refused too: it would read as an option to a sendmail
// program further along (the CVE-2016-10033 class of bug). Control
// characters, CR, LF and NUL never pass.
func checkAddress(a string) error {
	if a == "" {
		return errors.New("empty address")
	}
	if len(a) > maxPath {
		return fmt.Errorf("address longer than %d octets", maxPath)
	}
	if !utf8.ValidString(a) {
		return errors.New("address is not valid UTF-8")
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return errors.New("address has no domain")
	}
	local, domain := a[:at], a[at+1:]
	if err := checkLocalPart(local); err != nil {
		return err
	}
	return checkDomain(domain)
}

func checkLocalPart(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part")
	case len(local) > maxLocalPart:
		return fmt.Errorf("local part longer than %d octets", maxLocalPart)
	case local[0] == '-':
		return errors.New("local part starts with '-'")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New("misplaced '.' in local part")
	}
	for _, r := range local {
		if !isAtext(r) && r != '.' {
			return fmt.Errorf("character %q not allowed in local part", r)
		}
	}
	return nil
}

func checkDomain(domain string) error {
	switch {
	case domain == "":
		return errors.New("empty domain")
	case len(domain) > maxDomain:
		return fmt.Errorf("domain longer than %d octets", maxDomain)
	case domain[0] == '[':
		return checkAddressLiteral(domain)
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad domain %q", domain)
		}
		for _, r := range label {
			if !isLetDig(r) && r != '-' && !isUTF8Char(r) {
				return fmt.Errorf("character %q not allowed in domain", r)
			}
		}
	}
	return nil
}

// checkAddressLiteral accepts "[192.0.2.1]" and "[IPv6:2001:db8::1]" (RFC
// 5321 §4.1.3). The general form "[tag:text]" is refused: its text may
// hold '"', '<' and '>', which would end the path early on a lenient relay.
func checkAddressLiteral(domain string) error {
	if len(domain) < 3 || domain[len(domain)-1] != ']' {
		return fmt.Errorf("bad address literal %q", domain)
	}
	lit := domain[1 : len(domain)-1]
	if v6, ok := cutPrefixFold(lit, "IPv6:"); ok {
		if a, err := netip.ParseAddr(v6); err == nil && a.Is6() && a.Zone() == "" {
			return nil
		}
	} else if a, err := netip.ParseAddr(lit); err == nil && a.Is4() {
		return nil
	}
	return fmt.Errorf("bad address literal %q", domain)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// isAtext is RFC 5322 atext, widened to non-ASCII by RFC 6532.
func isAtext(r rune) bool {
	return isLetDig(r) || isUTF8Char(r) || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// isUTF8Char is a non-ASCII character allowed in an internationalised
// address: anything but the C1 controls and other control characters.
func isUTF8Char(r rune) bool {
	return r >= utf8.RuneSelf && r != utf8.RuneError && !unicode.IsControl(r)
}

func isLetDig(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// isASCII reports whether s has only 7-bit octets.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// needsUTF8 reports whether an envelope needs SMTPUTF8: a non-ASCII address.
func needsUTF8(from string, rcpts []string) bool {
	if !isASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r) {
			return true
		}
	}
	return false
}

// addressKey is what makes two recipients the same: the local part as
// written (it is case-sensitive), the domain in lower case.
func addressKey(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a
	}
	if !strings.ContainsFunc(a[at+1:], func(r rune) bool { return r >= utf8.RuneSelf || 'A' <= r && r <= 'Z' }) {
		return a // a lower-case ASCII domain, most addresses: no copy
	}
	return a[:at+1] + strings.ToLower(a[at+1:])
}
