package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// SenderPolicy rewrites a part on its way to the relay: it gets the
// stored envelope sender and the message's header block (its fields and
// the empty line after them, CRLF line endings) and returns the sender
// and header to send. cmd/relayq builds it from a route's sender policy
// with package rewrite. The body after the header is sent as stored, so
// the stored bytes (checked against their checksum before the attempt)
// and the history stay what intake committed.
type SenderPolicy func(from string, header []byte) (string, []byte)

// maxHeader bounds the header read for a SenderPolicy; intake's own
// header limits are far below it.
const maxHeader = 1 << 20

// outgoing applies p to a stored message: the envelope sender, the body
// reader and its size as the relay gets them. nil p changes nothing.
func outgoing(p SenderPolicy, from string, body io.Reader, size int64) (string, io.Reader, int64, error) {
	if p == nil {
		return from, body, size, nil
	}
	br := bufio.NewReader(body)
	header, err := readHeader(br)
	if err != nil {
		return "", nil, 0, fmt.Errorf("delivery: reading the stored header: %w", err)
	}
	newFrom, newHeader := p(from, header)
	return newFrom, io.MultiReader(bytes.NewReader(newHeader), br), size - int64(len(header)) + int64(len(newHeader)), nil
}

// readHeader reads the header block: lines up to and including the first
// empty line (or the whole message when it has none).
func readHeader(r *bufio.Reader) ([]byte, error) {
	var h []byte
	for {
		line, err := r.ReadSlice('\n')
		h = append(h, line...)
		switch {
		case errors.Is(err, io.EOF):
			return h, nil
		case errors.Is(err, bufio.ErrBufferFull):
		case err != nil:
			return nil, err
		case bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")):
			return h, nil
		}
		if len(h) > maxHeader {
			return nil, fmt.Errorf("header longer than %d bytes", maxHeader)
		}
	}
}

// Part is one part of a message as a relay would get it: see Plan.
type Part struct {
	Route  string   // the route's name
	Relays []string // relay ids, in failover order
	From   string   // MAIL FROM
	Rcpts  []string // RCPT TO, in order
	Body   []byte   // the message as sent (header rewritten, body as is)
}

// Plan is what the relays would get for a message from sender to rcpts
// with the stored bytes msg: one Part per route, grouped and rewritten by
// the code the workers use (`relayq rewrite --dry-run`).
func (r Relay) Plan(sender string, rcpts []string, msg []byte) ([]Part, error) {
	r = r.normalized()
	var out []Part
	for _, g := range groupAddresses(sender, rcpts, r.Routes) {
		from, body, _, err := outgoing(r.Senders[g.route.Name], sender, bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		out = append(out, Part{Route: g.route.Name, Relays: g.route.Relays, From: from, Rcpts: g.rcpts, Body: b})
	}
	return out, nil
}
