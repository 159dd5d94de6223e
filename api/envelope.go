package api

import (
	"crypto/rand"
	"fmt"
	"net/mail"
	"strings"
)

func randRead(b []byte) { rand.Read(b) } // never fails (Go 1.24+)

// parseAddrs parses the message's address fields; an error names the
// field and the entry.
func parseAddrs(m *Message) (parsedAddrs, *apiError) {
	var a parsedAddrs
	var e *apiError
	if m.From != "" {
		if a.from, e = parseList([]string{m.From}, "from"); e != nil {
			return a, e
		}
	}
	for _, f := range []struct {
		list addressList
		name string
		to   *[]*mail.Address
	}{{m.To, "to", &a.to}, {m.Cc, "cc", &a.cc}, {m.Bcc, "bcc", &a.bcc}, {m.ReplyTo, "reply_to", &a.replyTo}} {
		if *f.to, e = parseList(f.list, f.name); e != nil {
			return a, e
		}
	}
	return a, nil
}

func parseList(l []string, name string) ([]*mail.Address, *apiError) {
	var out []*mail.Address
	for i, v := range l {
		field := fmt.Sprintf("%s[%d]", name, i)
		if name == "from" {
			field = "from"
		}
		if hasControl(v) {
			return nil, badRequest("bad_address", field, field+": control characters")
		}
		list, err := mail.ParseAddressList(v)
		if err != nil {
			list, err = mail.ParseAddressList(qualifyBare(v))
		}
		if err != nil {
			return nil, badRequest("bad_address", field, field+": not an address: "+err.Error())
		}
		out = append(out, list...)
	}
	return out, nil
}

// envelopeOf is MAIL FROM and RCPT TO: the envelope field when given, else
// the From address (else defaultFrom) and To, Cc and Bcc. fields names each recipient's
// JSON field.
func envelopeOf(m *Message, a parsedAddrs, defaultFrom string) (from string, rcpts, fields []string, e *apiError) {
	switch {
	case m.Envelope != nil && m.Envelope.From != "":
		if from, e = oneAddress(m.Envelope.From, "envelope.from", false); e != nil {
			return
		}
	case len(a.from) == 1:
		from = a.from[0].Address
	case len(a.from) > 1:
		return "", nil, nil, badRequest("bad_address", "from", "from: give one address")
	case defaultFrom != "":
		from = defaultFrom
	default:
		return "", nil, nil, badRequest("no_sender", "from", "from is required (or envelope.from)")
	}
	if m.Envelope != nil && len(m.Envelope.To) > 0 {
		list, e := parseList(m.Envelope.To, "envelope.to")
		if e != nil {
			return "", nil, nil, e
		}
		for _, x := range list {
			rcpts, fields = append(rcpts, x.Address), append(fields, "envelope.to")
		}
		return from, rcpts, fields, nil
	}
	for _, f := range []struct {
		name string
		list []*mail.Address
	}{{"to", a.to}, {"cc", a.cc}, {"bcc", a.bcc}} {
		for _, x := range f.list {
			rcpts, fields = append(rcpts, x.Address), append(fields, f.name)
		}
	}
	if len(rcpts) == 0 {
		return "", nil, nil, badRequest("no_recipients", "to", "give at least one recipient in to, cc or bcc")
	}
	return from, rcpts, fields, nil
}

// oneAddress parses a single address; "" or "<>" is the null sender when
// nullOK.
func oneAddress(v, field string, nullOK bool) (string, *apiError) {
	if v == "" || v == "<>" {
		if nullOK {
			return "", nil
		}
		return "", badRequest("bad_address", field, field+": empty")
	}
	a, err := mail.ParseAddress(v)
	if err != nil || hasControl(v) {
		return "", badRequest("bad_address", field, field+": not an address")
	}
	return a.Address, nil
}

// reserved header fields are set by compose; headers may not replace them.
var reserved = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "reply-to": true, "subject": true, "date": true,
	"message-id": true, "mime-version": true, "content-type": true, "content-transfer-encoding": true,
	"content-disposition": true, "received": true, "return-path": true,
}

func checkHeaders(h map[string]string) *apiError {
	for k, v := range h {
		field := "headers." + k
		if !validFieldName(k) {
			return badRequest("bad_header", field, field+": not a header field name")
		}
		if reserved[strings.ToLower(k)] {
			return badRequest("bad_header", field, field+": set by relayq from the message fields")
		}
		if hasControl(v) {
			return badRequest("bad_header", field, field+": control characters in the value")
		}
	}
	return nil
}

// validFieldName is RFC 5322 §2.2: printable ASCII but ':' and space.
func validFieldName(k string) bool {
	if k == "" || len(k) > 76 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// hasControl reports a C0 control character but TAB, or DEL.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' && s[i] != '\t' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// qualifyBare gives a local name without a domain ("root", "Ops <root>")
// "@localhost", a local domain, so that intake's rewriting treats it as
// sendmail's bare names are treated: aliases, then [rewrite] domain.
func qualifyBare(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		switch {
		case strings.Contains(p, "@") || p == "":
		case strings.HasSuffix(p, ">"):
			p = strings.TrimSuffix(p, ">") + "@localhost>"
		default:
			p += "@localhost"
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}
