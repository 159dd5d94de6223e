package tests

import (
	"bytes"
	"net/mail"
	"regexp"
)

// relayqReceived returns the Received header relayq puts first in every
// message it takes in (the socket, which sendmail uses, the loopback
// listener and the maildrop), with the queue ID and the time it names;
// nil if msg does not begin with one.
func relayqReceived(msg []byte) (field, id, date []byte) {
	if !bytes.HasPrefix(msg, []byte("Received: ")) {
		return nil, nil, nil
	}
	end := 0
	for end == 0 || end < len(msg) && msg[end] == '\t' {
		i := bytes.Index(msg[end:], []byte("\r\n"))
		if i < 0 {
			return nil, nil, nil
		}
		end += i + 2
	}
	field = msg[:end]
	m := relayqIDDate.FindSubmatch(field)
	if m == nil || !bytes.Contains(field, []byte(" (relayq")) {
		return nil, nil, nil
	}
	return field, m[1], m[2]
}

var relayqIDDate = regexp.MustCompile(`[ \t]id (\w+); ([^\r]+)\r\n$`)

// sameMessage reports whether got, a message as the relay received it, is
// sent with what relayq's intake adds before it: its Received header, then
// Date and Message-ID when sent has none, then an empty line when sent does
// not begin with a header. A message without that Received is compared as
// it is.
func sameMessage(got, sent []byte) bool {
	received, id, date := relayqReceived(got)
	if received == nil {
		return bytes.Equal(got, sent)
	}
	rest := got[len(received):]
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
