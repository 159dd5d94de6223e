// Package smtpcmd gives the EHLO, MAIL and RCPT command lines go-smtp's
// client writes, without a server to write them to. go-smtp's client does not
// pipeline (RFC 2920): relayq's transport (to relays) and its sendmail
// client (to the daemon) write a transaction's commands in one write
// themselves, and take the lines from here so that they stay go-smtp's own,
// byte for byte, with go-smtp's checks and errors.
//
// A Formatter is a go-smtp client on a scripted connection: it greets,
// answers EHLO with the reply the real server gave (so the client knows the
// server's extensions, as the real one does) and every other command with
// 250, and keeps the last line written.
package smtpcmd

import (
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Formatter formats command lines for one server's extensions. It is not
// safe for concurrent use.
type Formatter struct {
	client *smtp.Client
	conn   *script
	last   lastRcpt
}

// lastRcpt is the last RCPT line go-smtp wrote, with what it was written
// for. A Formatter lives as long as a connection (a hundred transactions
// to a relay by default), and a null client's mail mostly goes to the same
// few recipients: the same recipient with the same options gets the same
// line again without a round through go-smtp's client (a 2 KiB builder,
// fmt, a scripted reply read through textproto: about half the cost of a
// pipelined transaction's command lines).
type lastRcpt struct {
	line []byte // nil: none yet
	to   string
	opts smtp.RcptOptions // Notify cloned; only options sameRcptOptions compares
}

// New returns a Formatter whose client said EHLO as localName and got
// ehlo, the wire bytes of the server's reply to EHLO, as its answer.
func New(localName string, ehlo []byte) (*Formatter, error) {
	s := &script{ehlo: ehlo, in: []byte("220 formatter\r\n")}
	c := smtp.NewClient(s)
	if err := c.Hello(localName); err != nil {
		return nil, err
	}
	return &Formatter{client: c, conn: s}, nil
}

// HelloLine returns the EHLO line go-smtp's client writes first when it
// greets a server as localName, or the error it returns before writing
// one: for a client that sends it before it has read the greeting.
func HelloLine(localName string) ([]byte, error) {
	s := &script{ehlo: []byte("250 formatter\r\n"), in: []byte("220 formatter\r\n")}
	if err := smtp.NewClient(s).Hello(localName); err != nil {
		return nil, err
	}
	return s.line, nil
}

// Mail returns the MAIL command line go-smtp writes for from and opts, or
// the error it returns before writing one. The line is valid until the
// next call.
func (f *Formatter) Mail(from string, opts *smtp.MailOptions) ([]byte, error) {
	f.conn.line = f.conn.line[:0]
	if err := f.client.Mail(from, opts); err != nil {
		return nil, err
	}
	return f.conn.line, nil
}

// Rcpt returns the RCPT command line go-smtp writes for to and opts, or
// the error it returns before writing one. The line is valid until the
// next call.
func (f *Formatter) Rcpt(to string, opts *smtp.RcptOptions) ([]byte, error) {
	if f.last.line != nil && to == f.last.to && sameRcptOptions(opts, &f.last.opts) {
		return f.last.line, nil
	}
	f.conn.line = f.conn.line[:0]
	if err := f.client.Rcpt(to, opts); err != nil {
		return nil, err
	}
	f.last.line = nil
	if memoizable(opts) {
		f.last.to, f.last.opts = to, smtp.RcptOptions{}
		if opts != nil {
			f.last.opts = smtp.RcptOptions{Notify: slices.Clone(opts.Notify),
				OriginalRecipientType: opts.OriginalRecipientType, OriginalRecipient: opts.OriginalRecipient}
		}
		f.last.line = append(f.last.line, f.conn.line...)
	}
	return f.conn.line, nil
}

// memoizable reports whether the RCPT line for opts may be given again:
// only options that are values (the DSN ones relayq sets) are compared,
// so a line with a deadline, a priority or RRVS is always formatted anew.
func memoizable(opts *smtp.RcptOptions) bool {
	return opts == nil || opts.RequireRecipientValidSince.IsZero() && opts.DeliverBy == nil && opts.MTPriority == nil
}

// sameRcptOptions reports whether opts gives go-smtp's client the same
// RCPT line as last, a memoizable one. Every field of smtp.RcptOptions is
// either compared here or excluded by memoizable
// (TestRcptOptionsAllCompared fails when go-smtp adds one).
func sameRcptOptions(opts, last *smtp.RcptOptions) bool {
	if opts == nil {
		return len(last.Notify) == 0 && last.OriginalRecipientType == "" && last.OriginalRecipient == ""
	}
	return memoizable(opts) && slices.Equal(opts.Notify, last.Notify) &&
		opts.OriginalRecipientType == last.OriginalRecipientType && opts.OriginalRecipient == last.OriginalRecipient
}

// formatExtensions are the extensions go-smtp's client looks at when it
// writes MAIL and RCPT.
var formatExtensions = []string{"8BITMIME", "SIZE", "SMTPUTF8", "DSN", "REQUIRETLS", "AUTH", "RRVS", "DELIVERBY", "MT-PRIORITY"}

// EHLOReply is an EHLO reply, as wire bytes, listing those of the
// extensions go-smtp's client formats MAIL and RCPT by that the server c
// has greeted offers, with their parameters: for New, when only a client
// (not the reply's bytes) is at hand.
func EHLOReply(c *smtp.Client) []byte {
	b := []byte("250-formatter\r\n")
	for _, ext := range formatExtensions {
		if ok, param := c.Extension(ext); ok {
			b = append(b, "250-"+strings.TrimSpace(ext+" "+param)+"\r\n"...)
		}
	}
	return append(b, "250 HELP\r\n"...)
}

// script is the Formatter client's connection.
type script struct {
	net.Conn // nil: the client only reads, writes, sets deadlines and closes
	ehlo     []byte
	in       []byte // replies not yet read
	line     []byte // the last command written
}

func (s *script) Write(b []byte) (int, error) {
	s.line = append(s.line[:0], b...)
	if len(b) >= 5 && strings.EqualFold(string(b[:5]), "EHLO ") {
		s.in = append(s.in, s.ehlo...)
	} else {
		s.in = append(s.in, "250 ok\r\n"...)
	}
	return len(b), nil
}

func (s *script) Read(b []byte) (int, error) {
	if len(s.in) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.in)
	s.in = s.in[n:]
	return n, nil
}

func (s *script) SetDeadline(time.Time) error      { return nil }
func (s *script) SetReadDeadline(time.Time) error  { return nil }
func (s *script) SetWriteDeadline(time.Time) error { return nil }
func (s *script) Close() error                     { return nil }
