package transport

import (
	"slices"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// DSN is a message's delivery status notification request (RFC 3461):
// RET and ENVID on MAIL FROM.
type DSN struct {
	Return     string // "FULL", "HDRS", or "" for the relay's default
	EnvelopeID string // ENVID, decoded (go-smtp xtext-encodes it); "" for none
}

// RecipientDSN is one recipient's NOTIFY and ORCPT on RCPT TO.
type RecipientDSN struct {
	Notify   []string // "NEVER", or some of "SUCCESS", "FAILURE", "DELAY"; nil for none
	OrigType string   // ORCPT address type: "RFC822" or "UTF-8"; "" for no ORCPT
	Orig     string   // ORCPT address, decoded
}

// Limits of RFC 3461 §4.2 and §4.4, on the values as sent, in xtext
// (xtextLen): OpenSMTPD refuses a longer ENVID with 503 5.5.4.
const (
	maxEnvelopeID = 100
	maxOrig       = 500
)

// checkDSN refuses DSN parameters that go-smtp would reject with a plain
// error (which would make the message fail again at every attempt), or
// that could not be written safely. Intake validates them already; this
// guards against a damaged record. The refusal is permanent, like a
// relay's 501 5.5.4.
func checkDSN(m *Message) error {
	bad := func(what string) error {
		return localError(501, smtp.EnhancedCode{5, 5, 4}, "invalid DSN parameter: %s", what)
	}
	switch m.DSN.Return {
	case "", string(smtp.DSNReturnFull), string(smtp.DSNReturnHeaders):
	default:
		return bad("RET=" + m.DSN.Return)
	}
	if id := m.DSN.EnvelopeID; xtextLen(id) > maxEnvelopeID || !printableASCII(id) {
		return bad("ENVID")
	}
	if m.RecipientDSN == nil {
		return nil
	}
	if len(m.RecipientDSN) != len(m.Recipients) {
		return bad("NOTIFY/ORCPT not given for each recipient")
	}
	for _, d := range m.RecipientDSN {
		if len(d.Notify) > 0 && !validNotify(d.Notify) {
			return bad("NOTIFY")
		}
		switch {
		case d.OrigType == "" && d.Orig == "":
		case len(d.Orig) > maxOrig || d.Orig == "":
			return bad("ORCPT")
		case d.OrigType == string(smtp.DSNAddressTypeRFC822) && printableASCII(d.Orig) && xtextLen(d.Orig) <= maxOrig:
		case d.OrigType == string(smtp.DSNAddressTypeUTF8) && utf8.ValidString(d.Orig):
		default:
			return bad("ORCPT")
		}
	}
	return nil
}

// validNotify: NEVER alone, or SUCCESS, FAILURE and DELAY each at most once.
func validNotify(values []string) bool {
	for i, v := range values {
		switch v {
		case string(smtp.DSNNotifyNever):
			if len(values) != 1 {
				return false
			}
		case string(smtp.DSNNotifySuccess), string(smtp.DSNNotifyFailure), string(smtp.DSNNotifyDelayed):
			if slices.Contains(values[:i], v) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// mailOptions builds MAIL FROM's parameters. go-smtp adds BODY=8BITMIME by
// itself whenever the relay offers it (the connection takes it out again
// for a 7-bit message: clientConn), SIZE= when the relay offers SIZE, and
// RET/ENVID only when the relay offers DSN.
func mailOptions(m *Message) *smtp.MailOptions {
	return &smtp.MailOptions{
		Size:       m.Size,
		UTF8:       m.UTF8,
		Return:     smtp.DSNReturn(m.DSN.Return),
		EnvelopeID: m.DSN.EnvelopeID,
	}
}

// rcptOptions builds recipient i's RCPT TO parameters; go-smtp sends
// NOTIFY and ORCPT only when the relay offers DSN.
func rcptOptions(m *Message, i int) *smtp.RcptOptions {
	if m.RecipientDSN == nil {
		return nil
	}
	d := m.RecipientDSN[i]
	o := &smtp.RcptOptions{
		OriginalRecipientType: smtp.DSNAddressType(d.OrigType),
		OriginalRecipient:     d.Orig,
	}
	if o.OriginalRecipientType == smtp.DSNAddressTypeUTF8 && printableASCII(d.Orig) && xtextLen(d.Orig) <= maxOrig {
		// The same address as rfc822 (RFC 6533 §3), which every relay
		// that offers DSN takes: OpenSMTPD refuses any utf-8 ORCPT with
		// 553, and that recipient would be dead.
		o.OriginalRecipientType = smtp.DSNAddressTypeRFC822
	}
	for _, n := range d.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(n))
	}
	return o
}

// hasDSN reports whether m carries any DSN parameter.
func hasDSN(m *Message) bool {
	if m.DSN != (DSN{}) {
		return true
	}
	return slices.ContainsFunc(m.RecipientDSN, func(d RecipientDSN) bool {
		return len(d.Notify) > 0 || d.Orig != ""
	})
}

// noteDSN logs, once per connection, that DSN parameters are left out
// because the relay does not offer DSN (as Postfix does: the relay then
// applies its own default notifications).
func (t *Transport) noteDSN(c *conn, m *Message) {
	if c.dsnNoted || !hasDSN(m) {
		return
	}
	if ok, _ := c.client.Extension("DSN"); ok {
		return
	}
	c.dsnNoted = true
	t.log.Debug("relay does not offer DSN; RET, ENVID, NOTIFY and ORCPT are left out", "conn", c.id, "relay", t.opts.Address)
}

// xtextLen is the length of s in xtext (RFC 3461 §4), as go-smtp writes
// it: "+", "=" and any byte outside "!".."~" take three characters.
func xtextLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' || c == '+' || c == '=' {
			n += 2
		}
	}
	return n
}
