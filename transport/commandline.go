package transport

import (
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// go-smtp's client formats a MAIL or RCPT line with fmt into a 2 KiB
// builder and then reads a reply for it (commandWriter's "250 ok"): a dozen
// allocations and 4 KiB a message. The lines of a plain transaction
// (no DSN parameters, no AUTH=, no REQUIRETLS, an address without CR or
// LF) are written here instead, byte for byte as go-smtp writes them
// (TestCommandLinesAsGoSMTP); every other line, and every error, is still
// go-smtp's.

// offered are the extensions of the relay's EHLO reply that the plain
// lines depend on.
type offered struct {
	eightBitMIME, size, smtpUTF8, dsn bool
}

func offeredBy(c *smtp.Client) offered {
	has := func(ext string) bool { ok, _ := c.Extension(ext); return ok }
	return offered{eightBitMIME: has("8BITMIME"), size: has("SIZE"), smtpUTF8: has("SMTPUTF8"), dsn: has("DSN")}
}

// appendMail appends the MAIL line go-smtp's Client.Mail writes for from
// and opts to dst; ok is false when the line is not a plain one (go-smtp
// is to write it, or refuse it).
func (e offered) appendMail(dst []byte, from string, opts *smtp.MailOptions) ([]byte, bool) {
	if hasLineBreak(from) || opts == nil || opts.RequireTLS || opts.Auth != nil ||
		opts.UTF8 && !e.smtpUTF8 || e.dsn && (opts.Return != "" || opts.EnvelopeID != "") {
		return dst, false
	}
	dst = append(dst, "MAIL FROM:<"...)
	dst = append(dst, from...)
	dst = append(dst, '>')
	if e.eightBitMIME {
		dst = append(dst, " BODY=8BITMIME"...)
	}
	if e.size && opts.Size != 0 {
		dst = append(dst, " SIZE="...)
		dst = strconv.AppendInt(dst, opts.Size, 10)
	}
	if opts.UTF8 {
		dst = append(dst, " SMTPUTF8"...)
	}
	return append(dst, "\r\n"...), true
}

// appendRcpt appends the RCPT line go-smtp's Client.Rcpt writes for to
// and opts to dst; ok is false when the line is not a plain one.
func (e offered) appendRcpt(dst []byte, to string, opts *smtp.RcptOptions) ([]byte, bool) {
	if hasLineBreak(to) {
		return dst, false
	}
	if opts != nil {
		dsn := e.dsn && (len(opts.Notify) != 0 || opts.OriginalRecipient != "")
		if dsn || !opts.RequireRecipientValidSince.IsZero() || opts.DeliverBy != nil || opts.MTPriority != nil {
			return dst, false
		}
	}
	dst = append(dst, "RCPT TO:<"...)
	dst = append(dst, to...)
	return append(dst, ">\r\n"...), true
}

func hasLineBreak(s string) bool { return strings.ContainsAny(s, "\r\n") }
