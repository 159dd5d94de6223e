package transport

import (
	"bytes"
	"strings"
)

// clientConn is the connection go-smtp's client runs on. It makes that
// client, whose habits cannot be configured, put on the wire what relayq
// decides:
//
//   - It replays the greeting transport already read, because go-smtp
//     insists on reading one.
//   - It answers go-smtp's EHLO, LHLO and HELO with the replies transport
//     got to its own (setup, dial.go), without sending them again. go-smtp
//     says EHLO when it starts and again after every RSET (Client.Reset
//     forgets the greeting), and relays such as OpenSMTPD refuse a second
//     one in a session ("503 5.5.1 Already identified"): a session says
//     hello once, and once more after STARTTLS (RFC 3207 §4.2), which
//     transport does itself.
//   - It takes BODY=8BITMIME, which go-smtp adds to every MAIL when the
//     relay offers 8BITMIME, out of MAIL for a message whose body is 7-bit
//     (RFC 6152: the parameter declares 8-bit content).
//
// go-smtp writes each command with one Write (textproto's buffered writer,
// flushed per command) and reads its reply at once, on one goroutine;
// clientConn relies on both.
type clientConn struct {
	replayConn                   // pending: the greeting, then a replayed hello reply
	hellos     map[string][]byte // verb (EHLO, LHLO, HELO) → the relay's reply to it, as wire bytes
	rest       []byte            // bytes the relay sent after its hello reply, read after that
	// sevenBit: the message being sent has no 8-bit octet; set by
	// transact before MAIL.
	sevenBit bool
}

func (c *clientConn) Write(b []byte) (int, error) {
	verb := commandVerb(b)
	if reply, ok := c.hellos[verb]; ok {
		c.pending = append(append(c.pending, reply...), c.rest...)
		c.rest = nil
		return len(b), nil
	}
	if verb == "MAIL" && c.sevenBit {
		if out := without8BitMIME(b); len(out) != len(b) {
			if _, err := c.Conn.Write(out); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return c.Conn.Write(b)
}

// commandVerb returns the verb, in upper case, of b when b is exactly one
// command line; else "".
func commandVerb(b []byte) string {
	line, ok := bytes.CutSuffix(b, []byte("\r\n"))
	if !ok || bytes.ContainsAny(line, "\r\n") {
		return ""
	}
	verb, _, _ := bytes.Cut(line, []byte(" "))
	if len(verb) > 8 {
		return ""
	}
	return strings.ToUpper(string(verb))
}

// without8BitMIME returns the MAIL command line b without its BODY=8BITMIME
// parameter (b itself when it has none).
func without8BitMIME(b []byte) []byte {
	i := bytes.Index(b, []byte(" BODY=8BITMIME"))
	if i < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	out = append(out, b[:i]...)
	return append(out, b[i+len(" BODY=8BITMIME"):]...)
}
