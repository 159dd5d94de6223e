package rewrite

import (
	"bytes"
	"net/mail"
	"regexp"
	"strings"
	"sync"
)

// Message applies the sender rules to a message whose line endings are
// CRLF: it returns the envelope sender as it will be sent (Sender) and the
// message with its header rewritten. In this order, so that the sender
// policy applies to a default From too:
//
//  1. each Options.Defaults field the header lacks is added at its end;
//  2. each address of From that is local is qualified, and masqueraded;
//  3. FromHeader replaces the address in From when FromHeaderWhen says
//     (keeping the display name), the original going to Reply-To with
//     FromToReplyTo when the message came without one (it takes the
//     place of a default Reply-To).
//
// Only the header block changes: fields left alone keep their bytes, a
// rewritten From keeps its place, and the body is copied as it is. A From
// field that does not parse is left as it is. When nothing changes (the
// usual case: a qualified From and the defaults present), msg itself is
// returned, not a copy.
func (r *Rules) Message(from string, msg []byte) (string, []byte) {
	if r.keepsHeader(msg) { // unchanged.go: most messages, without parsing them
		return r.Sender(from), msg
	}
	return r.Sender(from), r.rewriteHeader(msg)
}

// rewriteHeader is Message's header rewrite, field by field (msg itself
// when nothing changes).
func (r *Rules) rewriteHeader(msg []byte) []byte {
	h, body := splitHeader(msg)
	ownReplyTo := h.index("Reply-To") >= 0
	changed := false
	for _, d := range r.opts.Defaults {
		if h.index(d.Name) < 0 {
			h.add(d.Name, d.Value)
			changed = true
		}
	}
	if !r.rewriteFrom(&h, ownReplyTo) && !changed {
		return msg
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 128)
	for _, f := range h.fields {
		out.Write(f.raw)
	}
	out.Write(body)
	return out.Bytes()
}

// rewriteFrom applies steps 2 and 3 of Message to the From field and
// reports whether it changed the header. ownReplyTo says whether the
// message came with a Reply-To: the original From goes there only if not,
// replacing a [defaults] reply_to.
func (r *Rules) rewriteFrom(h *header, ownReplyTo bool) bool {
	i := h.index("From")
	if i < 0 {
		return false
	}
	addrs, err := r.parseFrom(h.fields[i].value())
	if err != nil || len(addrs) == 0 {
		return false
	}
	changed := false
	var original []*mail.Address
	for _, a := range addrs {
		was := a.Address
		var replaced bool
		if a.Address, replaced = r.fromAddress(was); replaced {
			original = append(original, &mail.Address{Address: r.masquerade(r.qualify(was))})
		}
		changed = changed || a.Address != was
	}
	if !changed {
		return false
	}
	h.fields[i] = newField("From", formatList(addrs))
	if r.opts.FromToReplyTo && len(original) > 0 && !ownReplyTo {
		if j := h.index("Reply-To"); j >= 0 {
			h.fields[j] = newField("Reply-To", formatList(original))
		} else {
			h.add("Reply-To", formatList(original))
		}
	}
	return true
}

// fromAddress is what rewriteFrom makes of an address of the From field:
// FromHeader when its rule applies (replaced), else the address qualified
// and masqueraded.
func (r *Rules) fromAddress(was string) (addr string, replaced bool) {
	if r.opts.FromHeader != "" && r.applies(r.opts.FromHeaderWhen, was) {
		return r.opts.FromHeader, true
	}
	return r.masquerade(r.qualify(was)), false
}

// bareFrom is a From without a domain, as cron and other local programs
// write it: "root", "root (Cron Daemon)", "Cron Daemon <root>".
var (
	bareComment = lazyRegexp(`^\s*([A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~.-]+)\s*(\(.*\))?\s*$`)
	bareAngle   = lazyRegexp(`^(.*)<\s*([A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~.-]+)\s*>\s*$`)
)

// lazyRegexp compiles expr on first use, not when relayq starts (every
// sendmail would pay for it).
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// parseFrom parses the From field's addresses. One without a domain, which
// RFC 5322 does not allow and net/mail does not parse, is read as one at
// localhost, which is local ("root (Cron Daemon)" → "root@localhost (Cron
// Daemon)"): rewriteFrom then gives it the rewrite domain.
func (r *Rules) parseFrom(v string) ([]*mail.Address, error) {
	addrs, err := addressParser.ParseList(v)
	if err == nil || r.opts.Domain == "" {
		return addrs, err
	}
	if m := bareComment().FindStringSubmatch(v); m != nil {
		return addressParser.ParseList(m[1] + "@localhost " + m[2])
	}
	if m := bareAngle().FindStringSubmatch(v); m != nil {
		return addressParser.ParseList(m[1] + "<" + m[2] + "@localhost>")
	}
	return nil, err
}

// addressParser decodes RFC 2047 display names (UTF-8, ISO-8859-1 and
// US-ASCII: net/mail's own decoder; a name in another charset makes the
// field unparsable, so it is left as it is).
var addressParser = mail.AddressParser{}

// formatList writes addresses as RFC 5322 wants them, the display names
// encoded by RFC 2047 when they are not ASCII (net/mail's Address.String).
func formatList(addrs []*mail.Address) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		if a.Name == "" {
			s[i] = a.Address
		} else {
			s[i] = a.String()
		}
	}
	return strings.Join(s, ", ")
}

// header is a message's header block, field by field.
type header struct{ fields []field }

// field is one header field with its bytes as written: name, colon,
// value, folding and the final CRLF.
type field struct {
	name string
	raw  []byte
}

func newField(name, value string) field {
	return field{name: name, raw: []byte(name + ": " + value + "\r\n")}
}

// value is the field's value, unfolded.
func (f field) value() string {
	v := string(f.raw[len(f.name)+1:])
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.TrimSpace(v)
}

func (h *header) index(name string) int {
	for i, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return i
		}
	}
	return -1
}

func (h *header) add(name, value string) { h.fields = append(h.fields, newField(name, value)) }

// splitHeader cuts msg after its header: fields up to the empty line, the
// rest (that empty line included) is the body. A message whose first line
// is not a field has an empty header; its whole text is the body. The
// fields' bytes are msg's own.
func splitHeader(msg []byte) (header, []byte) {
	var h header
	rest := msg
	for len(rest) > 0 {
		name, raw, ok := nextField(rest)
		if !ok {
			break
		}
		h.fields = append(h.fields, field{name: string(name), raw: raw})
		rest = rest[len(raw):]
	}
	return h, rest
}

// nextField cuts the first field off the header lines in rest: its name
// and its bytes, continuation lines (folding) and line endings included.
// ok is false when the first line is not a field: the header ends there.
func nextField(rest []byte) (name, raw []byte, ok bool) {
	end := lineEnd(rest)
	line := rest[:end]
	colon := 0
	for ; colon < len(line) && line[colon] != ':'; colon++ {
		if c := line[colon]; c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return nil, nil, false // no field name has white space
		}
	}
	if colon == 0 || colon == len(line) {
		return nil, nil, false
	}
	for end < len(rest) && (rest[end] == ' ' || rest[end] == '\t') {
		end += lineEnd(rest[end:])
	}
	return line[:colon], rest[:end:end], true
}

// lineEnd is the length of the first line of b with its LF.
func lineEnd(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i + 1
	}
	return len(b)
}
