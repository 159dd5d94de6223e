package spool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// DSN parameters (RFC 3461). go-smtp's server (EnableDSN) parses them and
// refuses bad syntax itself with 501 5.5.4 ("Unknown RET value",
// "Malformed NOTIFY parameter value", "Malformed ORCPT parameter value",
// "Malformed ENVID parameter value"); the checks here add the limits it
// does not enforce, so that whatever is queued can go to the relay as it
// is. The values are kept with the message and passed on by the transport.

// Limits of RFC 3461 §4.2 (ORCPT) and §4.4 (ENVID), on the values as they
// go on the wire, in xtext, where "+", "=" and a space take three
// characters: OpenSMTPD refuses an ENVID longer than 100 that way with
// 503 5.5.4 at MAIL, which would fail the whole message at the relay
// after intake accepted it.
const (
	maxEnvelopeID = 100
	maxOrig       = 500
)

func replyBadDSN(text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: text}
}

// mailDSN checks and returns MAIL FROM's RET and ENVID.
func mailDSN(opts *smtp.MailOptions) (queue.DSN, error) {
	if opts == nil {
		return queue.DSN{}, nil
	}
	d := queue.DSN{Return: string(opts.Return), EnvelopeID: opts.EnvelopeID}
	if err := checkDSN(d); err != nil {
		return queue.DSN{}, replyBadDSN(err.Error())
	}
	return d, nil
}

// checkDSN checks RET and ENVID.
func checkDSN(d queue.DSN) error {
	switch smtp.DSNReturn(d.Return) {
	case "", smtp.DSNReturnFull, smtp.DSNReturnHeaders:
	default:
		return fmt.Errorf("RET must be FULL or HDRS, not %.20q", d.Return)
	}
	if len(xtextEncode(d.EnvelopeID)) > maxEnvelopeID {
		return fmt.Errorf("ENVID longer than %d characters in xtext", maxEnvelopeID)
	}
	if !printableASCII(d.EnvelopeID) {
		return fmt.Errorf("ENVID must be printable ASCII")
	}
	return nil
}

// rcptDSN checks and returns RCPT TO's NOTIFY and ORCPT.
func rcptDSN(opts *smtp.RcptOptions) (queue.RecipientDSN, error) {
	if opts == nil {
		return queue.RecipientDSN{}, nil
	}
	d := queue.RecipientDSN{OrigType: string(opts.OriginalRecipientType), Orig: opts.OriginalRecipient}
	for _, n := range opts.Notify {
		d.Notify = append(d.Notify, string(n))
	}
	if err := checkRecipientDSN(d); err != nil {
		return queue.RecipientDSN{}, replyBadDSN(err.Error())
	}
	return d, nil
}

// checkRecipientDSN checks NOTIFY and ORCPT.
func checkRecipientDSN(d queue.RecipientDSN) error {
	for i, n := range d.Notify {
		switch smtp.DSNNotify(n) {
		case smtp.DSNNotifyNever:
			if len(d.Notify) != 1 {
				return fmt.Errorf("NOTIFY=NEVER cannot be combined with other values")
			}
		case smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed:
			if slices.Contains(d.Notify[:i], n) {
				return fmt.Errorf("NOTIFY value %s given twice", n)
			}
		default:
			return fmt.Errorf("NOTIFY must be NEVER or a list of SUCCESS, FAILURE and DELAY, not %.20q", n)
		}
	}
	if d.OrigType == "" && d.Orig == "" {
		return nil
	}
	switch {
	case d.Orig == "":
		return fmt.Errorf("ORCPT has no address")
	case len(d.Orig) > maxOrig:
		return fmt.Errorf("ORCPT longer than %d characters", maxOrig)
	case smtp.DSNAddressType(d.OrigType) == smtp.DSNAddressTypeRFC822:
		if !printableASCII(d.Orig) {
			return fmt.Errorf("ORCPT rfc822 address must be printable ASCII")
		}
		if len(xtextEncode(d.Orig)) > maxOrig {
			return fmt.Errorf("ORCPT longer than %d characters in xtext", maxOrig)
		}
	case smtp.DSNAddressType(d.OrigType) == smtp.DSNAddressTypeUTF8:
		if !utf8.ValidString(d.Orig) || strings.ContainsFunc(d.Orig, unicode.IsControl) {
			return fmt.Errorf("ORCPT utf-8 address must be valid UTF-8 without control characters")
		}
	default:
		return fmt.Errorf("ORCPT address type must be rfc822 or utf-8, not %.20q", d.OrigType)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// clientMailOptions and clientRcptOptions give the DSN request to
// go-smtp's client (Submit); it sends them because the daemon offers DSN.
func clientMailOptions(env queue.Envelope, size int) *smtp.MailOptions {
	return &smtp.MailOptions{
		Size:       int64(size),
		UTF8:       env.UTF8 || needsUTF8(env.From, env.Recipients),
		Return:     smtp.DSNReturn(env.DSN.Return),
		EnvelopeID: env.DSN.EnvelopeID,
	}
}

func clientRcptOptions(env queue.Envelope, i int) *smtp.RcptOptions {
	if i >= len(env.RecipientDSN) || env.RecipientDSN[i].IsZero() {
		return nil
	}
	d := env.RecipientDSN[i]
	o := &smtp.RcptOptions{OriginalRecipientType: smtp.DSNAddressType(d.OrigType), OriginalRecipient: d.Orig}
	for _, n := range d.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(n))
	}
	return o
}

// xtext (RFC 3461 §4): what the maildrop format uses for ENVID and ORCPT,
// byte by byte, so that a value never holds a space or a line end.
func xtextEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

func xtextDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+3 > len(s) {
				return "", fmt.Errorf("truncated xtext escape")
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad xtext escape %q", s[i:i+3])
			}
			b.WriteByte(byte(n))
			i += 2
		case c > ' ' && c <= '~' && c != '=':
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("bad xtext character %q", c)
		}
	}
	return b.String(), nil
}

// maildropRcptParams renders a recipient's DSN request after its address
// on a maildrop "rcpt" line: " NOTIFY=A,B ORCPT=TYPE;xtext".
func maildropRcptParams(d queue.RecipientDSN) string {
	var b strings.Builder
	if len(d.Notify) > 0 {
		b.WriteString(" NOTIFY=" + strings.Join(d.Notify, ","))
	}
	if d.OrigType != "" {
		b.WriteString(" ORCPT=" + d.OrigType + ";" + xtextEncode(d.Orig))
	}
	return b.String()
}

// parseMaildropRcptParams reads what maildropRcptParams wrote.
func parseMaildropRcptParams(params string) (queue.RecipientDSN, error) {
	var d queue.RecipientDSN
	for p := range strings.FieldsSeq(params) {
		key, val, _ := strings.Cut(p, "=")
		switch key {
		case "NOTIFY":
			d.Notify = strings.Split(val, ",")
		case "ORCPT":
			typ, addr, ok := strings.Cut(val, ";")
			orig, err := xtextDecode(addr)
			if !ok || err != nil {
				return d, fmt.Errorf("bad ORCPT %.60q", val)
			}
			d.OrigType, d.Orig = typ, orig
		default:
			return d, fmt.Errorf("unknown recipient parameter %.60q", p)
		}
	}
	return d, checkRecipientDSN(d)
}
