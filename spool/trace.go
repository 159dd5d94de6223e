package spool

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"time"

	"relayq/queue"
)

// stamp is what the intake knows about a message when it adds the headers
// Postfix adds for local submitters (its cleanup with
// local_header_rewrite_clients, which takes in loopback clients).
type stamp struct {
	id        string // queue ID, from queue.NewID
	hostname  string // our name
	helo      string // the client's EHLO/HELO name
	with      string // "ESMTP" (EHLO), "SMTP" (HELO); "" from the maildrop
	submitter queue.Submitter
	now       time.Time
}

// maxHeloInHeader bounds the client's name in Received: a DNS name is at
// most 255 bytes, and a header line at most 998.
const maxHeloInHeader = 255

// stampMessage returns msg (CRLF line endings) with the headers the intake
// adds before it:
//
//   - Received, always, first: our name, the submitter's HELO name and
//     address (TCP), its uid when known (socket, maildrop, and the owner
//     of a TCP client's socket), the protocol, the queue ID and the time;
//   - Date and Message-ID, each when the header lacks it, in the daemon's
//     local time and as <YYYYMMDDhhmmss.QUEUEID@hostname>;
//   - an empty line when msg does not begin with a header (nor with the
//     empty line that ends one), so that its first line stays body.
//
// The bytes of msg follow unchanged. The added Date is the time in
// Received, so a reader can tell an added Date from the submitter's. The
// stamped message is appended to dst, which must not overlap msg (the
// session reuses msg's buffer for the next message); the SMTP session
// passes a pooled buffer (takeBodyBuffer), so that stamping allocates
// nothing for most messages, and nil elsewhere.
func stampMessage(dst, msg []byte, s stamp) []byte {
	b := dst
	if b == nil {
		b = make([]byte, 0, len(msg)+512)
	}
	b = append(b, "Received: "...)
	if s.submitter.Via == viaTCP {
		b = append(append(append(b, "from "...), headerSafe(s.helo)...), " ("...)
		b = append(appendBracketAddr(b, s.submitter.Addr), ")\r\n\t"...)
	}
	b = append(append(b, "by "...), s.hostname...)
	if s.submitter.UID >= 0 {
		b = append(strconv.AppendInt(append(b, " (relayq, from userid "...), int64(s.submitter.UID), 10), ')')
	} else {
		b = append(b, " (relayq)"...)
	}
	b = append(b, "\r\n\t"...)
	if s.with != "" {
		b = append(append(append(b, "with "...), s.with...), ' ')
	}
	b = append(append(append(b, "id "...), s.id...), "; "...)
	b = append(s.now.AppendFormat(b, time.RFC1123Z), "\r\n"...)

	fields, hasDate, hasID := scanHeader(msg)
	if !hasDate {
		b = append(s.now.AppendFormat(append(b, "Date: "...), time.RFC1123Z), "\r\n"...)
	}
	if !hasID {
		b = s.now.UTC().AppendFormat(append(b, "Message-ID: <"...), "20060102150405")
		b = append(append(append(append(append(b, '.'), s.id...), '@'), s.hostname...), ">\r\n"...)
	}
	if fields == 0 && len(msg) > 0 && !bytes.HasPrefix(msg, []byte("\r\n")) {
		b = append(b, "\r\n"...)
	}
	return append(b, msg...)
}

// scanHeader is what stampMessage needs of splitHeader(msg), without its
// copies: how many fields the header has, and whether one is Date and one
// Message-ID.
func scanHeader(msg []byte) (fields int, hasDate, hasID bool) {
	rest := msg
	for len(rest) > 0 {
		end := bytes.Index(rest, []byte("\r\n")) + 2
		if end < 2 {
			end = len(rest)
		}
		line := rest[:end]
		switch {
		case end == 2 && line[0] == '\r':
			return fields, hasDate, hasID
		case (line[0] == ' ' || line[0] == '\t') && fields > 0:
		default:
			n := fieldNameLen(line)
			if n < 0 {
				return fields, hasDate, hasID
			}
			fields++
			hasDate = hasDate || bytes.EqualFold(line[:n], []byte("Date"))
			hasID = hasID || bytes.EqualFold(line[:n], []byte("Message-ID"))
		}
		rest = rest[end:]
	}
	return fields, hasDate, hasID
}

// headerSafe is the client's HELO name as it may go into a header comment:
// printable ASCII but parentheses and backslash, at most maxHeloInHeader
// bytes.
func headerSafe(s string) string {
	if len(s) > maxHeloInHeader {
		s = s[:maxHeloInHeader]
	}
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || r == '(' || r == ')' || r == '\\'
	}) {
		return s // nothing to replace
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// appendBracketAddr appends a client's address as Received writes it,
// from RemoteAddr's "ip:port": "[127.0.0.1]", "[IPv6:::1]".
func appendBracketAddr(b []byte, hostport string) []byte {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	b = append(b, '[')
	if strings.Contains(host, ":") {
		b = append(b, "IPv6:"...)
	}
	return append(append(b, host...), ']')
}
