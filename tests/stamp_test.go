package tests

import (
	"bytes"
	"net/mail"
	"regexp"
)

// receivedByRelayq is the Received header relayq's intake puts first in
// every message it takes over SMTP (the socket, which sendmail uses, and
// the loopback listener): it names relayq, the queue ID and the time.
var receivedByRelayq = regexp.MustCompile(`^Received: [^\r]*\(relayq[^\r]*\r\n(?:\t[^\r]*\r\n)*?\twith E?SMTP id (\w+); ([^\r]+)\r\n`)

// sameMessage reports whether got, a message as the relay received it, is
// sent with what relayq's intake adds before it: its Received header, then
// Date and Message-ID when sent has none, then an empty line when sent does
// not begin with a header. A message taken from the maildrop (daemon down)
// has none of them, and is compared as it is.
func sameMessage(got, sent []byte) bool {
	m := receivedByRelayq.FindSubmatch(got)
	if m == nil {
		return bytes.Equal(got, sent)
	}
	rest := got[len(m[0]):]
	id, date := m[1], m[2]
	hdr, err := mail.ReadMessage(bytes.NewReader(sent))
	hasHeader := err == nil && len(hdr.Header) > 0
	if !hasHeader || hdr.Header.Get("Date") == "" {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, append(append([]byte("Date: "), date...), "\r\n"...)); !ok {
			return false
		}
	}
	if !hasHeader || hdr.Header.Get("Message-ID") == "" {
		line, after, _ := bytes.Cut(rest, []byte("\r\n"))
		if !bytes.HasPrefix(line, []byte("Message-ID: <")) || !bytes.Contains(line, append(append([]byte("."), id...), '@')) {
			return false
		}
		rest = after
	}
	if !hasHeader && len(sent) > 0 && !bytes.HasPrefix(sent, []byte("\r\n")) {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, []byte("\r\n")); !ok {
			return false
		}
	}
	return bytes.Equal(rest, sent)
}
