package spool

import "bytes"

// messageNeedsUTF8 decides whether a message submitted over SMTP needs
// SMTPUTF8 towards the relay: a non-ASCII address always does; otherwise
// only a submission that asked for SMTPUTF8 and has non-ASCII header
// octets (RFC 6532). A client that said SMTPUTF8 for an all-ASCII message
// does not make it undeliverable to a relay without SMTPUTF8, as in
// Postfix (SMTPUTF8_README, "SMTPUTF8 autodetection"). 8-bit bodies are
// marked apart, for BODY=8BITMIME.
func messageNeedsUTF8(asked bool, from string, rcpts []string, body []byte) bool {
	return needsUTF8(from, rcpts) || asked && !isASCII(string(headerSection(body)))
}

// headerSection is the header of a CRLF-normalised message: up to the
// first empty line, or all of it when there is none.
func headerSection(body []byte) []byte {
	if bytes.HasPrefix(body, []byte("\r\n")) {
		return nil
	}
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		return body[:i+2]
	}
	return body
}
