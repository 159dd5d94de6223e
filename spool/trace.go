package spool

import (
	"bytes"
	"fmt"
	"net"
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
//   - Received, always, first: our name, the submitter's uid (socket,
//     maildrop) or its HELO name and address (TCP), the protocol, the
//     queue ID and the time;
//   - Date and Message-ID, each when the header lacks it, in the daemon's
//     local time and as <YYYYMMDDhhmmss.QUEUEID@hostname>;
//   - an empty line when msg does not begin with a header (nor with the
//     empty line that ends one), so that its first line stays body.
//
// The bytes of msg follow unchanged. The added Date is the time in
// Received, so a reader can tell an added Date from the submitter's. The
// result is always a new slice, never msg: the session reuses msg's buffer
// for the next message.
func stampMessage(msg []byte, s stamp) []byte {
	date := s.now.Format(time.RFC1123Z)
	var b bytes.Buffer
	b.Grow(len(msg) + 512)
	b.WriteString("Received: ")
	if s.submitter.Via == viaTCP {
		fmt.Fprintf(&b, "from %s (%s)\r\n\tby %s (relayq)", headerSafe(s.helo), bracketAddr(s.submitter.Addr), s.hostname)
	} else if s.submitter.UID >= 0 {
		fmt.Fprintf(&b, "by %s (relayq, from userid %d)", s.hostname, s.submitter.UID)
	} else {
		fmt.Fprintf(&b, "by %s (relayq)", s.hostname)
	}
	b.WriteString("\r\n\t")
	if s.with != "" {
		fmt.Fprintf(&b, "with %s ", s.with)
	}
	fmt.Fprintf(&b, "id %s; %s\r\n", s.id, date)

	fields, _ := splitHeader(msg)
	has := func(name string) bool {
		for _, f := range fields {
			if f.is(name) {
				return true
			}
		}
		return false
	}
	if !has("Date") {
		fmt.Fprintf(&b, "Date: %s\r\n", date)
	}
	if !has("Message-ID") {
		fmt.Fprintf(&b, "Message-ID: <%s.%s@%s>\r\n", s.now.UTC().Format("20060102150405"), s.id, s.hostname)
	}
	if len(fields) == 0 && len(msg) > 0 && !bytes.HasPrefix(msg, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.Write(msg)
	return b.Bytes()
}

// headerSafe is the client's HELO name as it may go into a header comment:
// printable ASCII but parentheses and backslash, at most maxHeloInHeader
// bytes.
func headerSafe(s string) string {
	if len(s) > maxHeloInHeader {
		s = s[:maxHeloInHeader]
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

// bracketAddr is a client's address as Received writes it, from
// RemoteAddr's "ip:port": "[127.0.0.1]", "[IPv6:::1]".
func bracketAddr(hostport string) string {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if strings.Contains(host, ":") {
		host = "IPv6:" + host
	}
	return "[" + host + "]"
}
