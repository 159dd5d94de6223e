package spool

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// PrepareOptions are the sendmail command line and what the process knows
// about its user.
type PrepareOptions struct {
	From              string   // -f: envelope sender; "" = User@Hostname; "<>" = the null sender
	FullName          string   // -F: display name for an added From header
	ExtractRecipients bool     // -t: recipients also from To, Cc and Bcc
	Recipients        []string // the arguments; each may be a comma-separated list
	IgnoreDots        bool     // -i / -oi: a line with a single "." is not the end of input
	User              string   // login name, for the default sender
	Hostname          string   // qualifies addresses without a domain, and names Message-ID
	Now               time.Time
	MaxSize           int64 // largest input in bytes after CRLF normalisation; 0 = no limit
}

// Prepared is a message ready for Submit or WriteMaildrop.
type Prepared struct {
	From       string   // envelope sender; "" is the null sender
	Recipients []string // envelope recipients, qualified and without duplicates
	Body       []byte   // header and body, CRLF line endings only
}

// Prepare reads a message the way sendmail does and makes it ready to queue:
//
//   - Without IgnoreDots, a line holding only "." ends the input.
//   - Line endings become CRLF (a bare LF or CR each become CRLF), and the
//     message ends with CRLF.
//   - A leading mbox "From " line is dropped.
//   - The header block runs to the first empty line, or to the first line
//     that is neither a header field nor a continuation; in that case an
//     empty line is put in before the body. A message with no header at all
//     is all body.
//   - With ExtractRecipients, the addresses in To, Cc and Bcc are added to
//     the argument recipients (as Postfix does; classic sendmail would take
//     the arguments away instead); in a message being resent (it has a
//     Resent- field), those in Resent-To, Resent-Cc and Resent-Bcc instead,
//     as sendmail and Postfix's cleanup do. Bcc and Resent-Bcc fields are
//     always removed, as Postfix's cleanup does.
//   - Missing Date, Message-ID and From fields are added at the end of the
//     header: From is "FullName <sender>", the sender being -f or
//     User@Hostname.
//   - An address without a domain ("root") gets "@Hostname", as Postfix's
//     append_at_myorigin does.
//
// Errors wrap ErrBadMessage (too large, NUL octets), ErrBadAddress (an
// address that does not parse, control characters in From, FullName or an
// address: header injection) or ErrNoRecipients.
func Prepare(r io.Reader, o PrepareOptions) (*Prepared, error) {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	from, err := envelopeSender(o)
	if err != nil {
		return nil, err
	}
	if hasControl(o.FullName) {
		return nil, fmt.Errorf("%w: control character in full name %q", ErrBadAddress, o.FullName)
	}
	raw, err := readInput(r, o.IgnoreDots, o.MaxSize)
	if err != nil {
		return nil, err
	}
	fields, body := splitHeader(skipFromLine(raw))

	var rcpts []string
	for _, arg := range o.Recipients {
		list, err := parseAddressList(arg, o.Hostname)
		if err != nil {
			return nil, err
		}
		rcpts = append(rcpts, list...)
	}
	if o.ExtractRecipients {
		list, err := headerRecipients(fields, o.Hostname)
		if err != nil {
			return nil, err
		}
		rcpts = append(rcpts, list...)
	}
	rcpts = dedupe(rcpts)
	if len(rcpts) == 0 {
		return nil, ErrNoRecipients
	}

	var out bytes.Buffer
	out.Grow(len(raw) + 256)
	have := make(map[string]bool)
	for _, f := range fields {
		have[strings.ToLower(f.name)] = true
		if !f.is("Bcc") && !f.is("Resent-Bcc") {
			out.Write(f.raw)
		}
	}
	addMissing(&out, have, o, from)
	out.WriteString("\r\n")
	out.Write(body)
	return &Prepared{From: from, Recipients: rcpts, Body: out.Bytes()}, nil
}

// headerRecipients are the addresses -t takes from the header: those of
// To, Cc and Bcc, or, when any field's name begins with "Resent-" (the
// message is being resent, RFC 5322 §3.6.6), of Resent-To, Resent-Cc and
// Resent-Bcc.
func headerRecipients(fields []field, hostname string) ([]string, error) {
	names := []string{"To", "Cc", "Bcc"}
	for _, f := range fields {
		if len(f.name) > len("Resent-") && strings.EqualFold(f.name[:len("Resent-")], "Resent-") {
			names = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}
			break
		}
	}
	var rcpts []string
	for _, f := range fields {
		if !slices.ContainsFunc(names, f.is) {
			continue
		}
		list, err := parseAddressList(f.value(), hostname)
		if err != nil {
			return nil, fmt.Errorf("%w (in the %s header)", err, f.name)
		}
		rcpts = append(rcpts, list...)
	}
	return rcpts, nil
}

// envelopeSender is -f, qualified, or User@Hostname.
func envelopeSender(o PrepareOptions) (string, error) {
	f := strings.TrimSpace(o.From)
	if hasControl(o.From) {
		return "", fmt.Errorf("%w: control character in sender %q", ErrBadAddress, o.From)
	}
	switch f {
	case "<>":
		return "", nil
	case "":
		if o.User == "" {
			return "", fmt.Errorf("%w: no sender: unknown user", ErrBadAddress)
		}
		f = o.User
	}
	list, err := parseAddressList(f, o.Hostname)
	if err != nil {
		return "", err
	}
	if len(list) != 1 {
		return "", fmt.Errorf("%w: sender %q is not one address", ErrBadAddress, f)
	}
	return list[0], nil
}

// addMissing writes the Date, Message-ID and From fields the header lacks.
func addMissing(out *bytes.Buffer, have map[string]bool, o PrepareOptions, from string) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !have["date"] {
		fmt.Fprintf(out, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if !have["message-id"] {
		fmt.Fprintf(out, "Message-ID: <%s.%s@%s>\r\n", now.UTC().Format("20060102150405"), randomHex(8), o.Hostname)
	}
	if !have["from"] {
		addr := from
		if addr == "" {
			addr = o.User + "@" + o.Hostname
		}
		fmt.Fprintf(out, "From: %s\r\n", (&mail.Address{Name: o.FullName, Address: addr}).String())
	}
}

// readInput reads the message from r, stopping at a line holding only "."
// unless ignoreDots, and normalises its line endings.
func readInput(r io.Reader, ignoreDots bool, max int64) ([]byte, error) {
	n := &normalizer{max: max}
	var err error
	if ignoreDots {
		_, err = io.Copy(n, r)
	} else {
		err = copyToDotLine(n, r)
	}
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%w: message larger than %d bytes", ErrBadMessage, max)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read message: %w", err)
	}
	body, err := n.body()
	if err != nil {
		return nil, fmt.Errorf("%w: message larger than %d bytes", ErrBadMessage, max)
	}
	if n.nul {
		return nil, fmt.Errorf("%w: message contains NUL octets", ErrBadMessage)
	}
	return body, nil
}

// copyToDotLine copies r to w up to a line that holds only ".", which ends
// the input as it does for sendmail without -i.
func copyToDotLine(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	lineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if lineStart && isDotLine(chunk, err) {
			return nil
		}
		if _, werr := w.Write(chunk); werr != nil {
			return werr
		}
		lineStart = len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
}

func isDotLine(line []byte, err error) bool {
	s := string(line)
	return s == ".\n" || s == ".\r\n" || (s == "." && errors.Is(err, io.EOF))
}

// skipFromLine drops a leading mbox "From " line (the Unix envelope line
// some programs still write before the header), as Postfix's sendmail does;
// left in, it would end the header before it starts.
func skipFromLine(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("From ")) {
		return msg
	}
	if i := bytes.Index(msg, []byte("\r\n")); i >= 0 {
		return msg[i+2:]
	}
	return nil
}

// field is one header field: its name and its lines as they came (CRLF
// included), continuation lines too.
type field struct {
	name string
	raw  []byte
}

func (f field) is(name string) bool { return strings.EqualFold(f.name, name) }

// value is the field body, unfolded (RFC 5322 §2.2.3) and trimmed.
func (f field) value() string {
	v := string(f.raw[len(f.name)+1:])
	return strings.TrimSpace(strings.ReplaceAll(v, "\r\n", ""))
}

// splitHeader splits a CRLF message into header fields and body. The empty
// line that ends the header, if there is one, belongs to neither.
func splitHeader(msg []byte) (fields []field, body []byte) {
	rest := msg
	for len(rest) > 0 {
		end := bytes.Index(rest, []byte("\r\n")) + 2
		if end < 2 {
			end = len(rest)
		}
		line := rest[:end]
		switch {
		case end == 2 && line[0] == '\r':
			return fields, rest[2:]
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
		default:
			name, ok := fieldName(line)
			if !ok {
				return fields, rest
			}
			fields = append(fields, field{name: name, raw: bytes.Clone(line)})
		}
		rest = rest[end:]
	}
	return fields, nil
}

// fieldName returns the name of a header field line: printable ASCII but
// ':' and space, up to the first ':' (RFC 5322 §2.2).
func fieldName(line []byte) (string, bool) {
	n := fieldNameLen(line)
	if n < 0 {
		return "", false
	}
	return string(line[:n]), true
}

// fieldNameLen is the length of fieldName's name, or -1 when line starts
// no field.
func fieldNameLen(line []byte) int {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return -1
	}
	for _, c := range line[:i] {
		if c <= ' ' || c >= 0x7f {
			return -1
		}
	}
	return i
}

// parseAddressList parses a list of addresses (an argument or a header
// value), qualifies those without a domain with hostname, and checks each.
func parseAddressList(s, hostname string) ([]string, error) {
	if hasControl(s) {
		return nil, fmt.Errorf("%w: control character in %q", ErrBadAddress, s)
	}
	list, err := mail.ParseAddressList(s)
	if err != nil {
		// Perhaps addresses without a domain, which net/mail refuses:
		// qualify them one by one.
		list = nil
		for _, part := range splitAddressList(s) {
			a, perr := mail.ParseAddress(qualify(part, hostname))
			if perr != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrBadAddress, strings.TrimSpace(part), perr)
			}
			list = append(list, a)
		}
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		if err := checkAddress(a.Address); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadAddress, a.Address, err)
		}
		out = append(out, a.Address)
	}
	return out, nil
}

// qualify appends "@hostname" to an address that has no "@": a bare
// "root", or "Name <root>".
func qualify(part, hostname string) string {
	part = strings.TrimSpace(part)
	if strings.Contains(part, "@") {
		return part
	}
	if i := strings.LastIndexByte(part, '>'); i >= 0 && strings.Contains(part[:i], "<") {
		return part[:i] + "@" + hostname + part[i:]
	}
	return part + "@" + hostname
}

// splitAddressList splits at the commas that are not inside quotes,
// comments or angle brackets. Empty parts are dropped.
func splitAddressList(s string) []string {
	var parts []string
	var quoted, escaped bool
	depth, angle, start := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && depth == 0 && angle == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	out := parts[:0]
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}

// dedupe keeps the first of addresses that are the same (addressKey).
func dedupe(addrs []string) []string {
	seen := make(map[string]bool, len(addrs))
	out := addrs[:0]
	for _, a := range addrs {
		if k := addressKey(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// hasControl reports a C0 control character but TAB, or DEL: CR and LF
// among them, which could start a new header field or SMTP command.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' && s[i] != '\t' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}
