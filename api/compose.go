package api

import (
	"bytes"
	"fmt"
	"mime"
	"net/mail"
	"path"
	"strings"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// part is a node of the MIME tree compose builds: a leaf with a body, or
// a multipart with children.
type part struct {
	header   message.Header
	body     []byte
	children []*part
}

// content is an attachment with its bytes in hand (access.go fetched them).
type content struct {
	Attachment
	data []byte
}

// composed is a message ready for spool.Submit.
type composed struct {
	body       []byte
	messageID  string
	from       string   // envelope sender
	recipients []string // envelope recipients
	rcptField  []string // the JSON field each recipient came from
}

// parsedAddrs are the message's address fields, parsed.
type parsedAddrs struct {
	from                 []*mail.Address
	to, cc, bcc, replyTo []*mail.Address
}

// compose builds the MIME message: text and html as multipart/alternative,
// inline parts (with a cid) with the html in multipart/related, other
// attachments in multipart/mixed; text in quoted-printable, attachments in
// base64; every header with non-ASCII text RFC 2047 encoded; Date and
// Message-ID added. Header fields from m.Headers come after the standard
// ones and may not replace them.
func compose(m *Message, a parsedAddrs, atts []content, hostname string, now time.Time) ([]byte, string, error) {
	var h gomail.Header
	h.SetDate(now)
	if err := h.GenerateMessageIDWithHostname(hostname); err != nil {
		return nil, "", err
	}
	msgID, _ := h.MessageID()
	setAddrs(&h, "From", a.from)
	setAddrs(&h, "To", a.to)
	setAddrs(&h, "Cc", a.cc)
	setAddrs(&h, "Reply-To", a.replyTo)
	if m.Subject != "" {
		h.SetSubject(m.Subject)
	}
	for _, k := range sortedKeys(m.Headers) {
		h.SetText(k, m.Headers[k])
	}
	root := tree(m, atts)
	for f := root.header.Fields(); f.Next(); {
		h.Set(f.Key(), f.Value())
	}
	root.header = h.Header
	var b bytes.Buffer
	if err := writePart(&b, root, true, nil); err != nil {
		return nil, "", err
	}
	return b.Bytes(), msgID, nil
}

func setAddrs(h *gomail.Header, key string, l []*mail.Address) {
	if len(l) == 0 {
		return
	}
	out := make([]*gomail.Address, len(l))
	for i, a := range l {
		out[i] = (*gomail.Address)(a)
	}
	h.SetAddressList(key, out)
}

// tree arranges the parts: mixed(related(alternative(text, html), inline…), attachments…),
// each level only when needed.
func tree(m *Message, atts []content) *part {
	var alts []*part
	if m.Text != nil || m.HTML == nil {
		alts = append(alts, textPart("text/plain", deref(m.Text)))
	}
	if m.HTML != nil {
		alts = append(alts, textPart("text/html", *m.HTML))
	}
	body := multi("multipart/alternative", alts)
	var inline, attached []*part
	for _, c := range atts {
		if c.CID != "" {
			inline = append(inline, attachmentPart(c))
		} else {
			attached = append(attached, attachmentPart(c))
		}
	}
	if len(inline) > 0 {
		body = multi("multipart/related", append([]*part{body}, inline...))
	}
	if len(attached) > 0 {
		body = multi("multipart/mixed", append([]*part{body}, attached...))
	}
	return body
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// multi wraps parts in a multipart of type t; one part is returned as it is.
func multi(t string, parts []*part) *part {
	if len(parts) == 1 {
		return parts[0]
	}
	p := &part{children: parts}
	p.header.SetContentType(t, nil)
	return p
}

func textPart(t, text string) *part {
	p := &part{body: []byte(text)}
	p.header.SetContentType(t, map[string]string{"charset": "utf-8"})
	p.header.Set("Content-Transfer-Encoding", "quoted-printable")
	return p
}

func attachmentPart(c content) *part {
	p := &part{body: c.data}
	ct := c.ContentType
	if ct == "" {
		ct = mime.TypeByExtension(path.Ext(c.Filename))
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	t, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t, params = "application/octet-stream", nil
	}
	p.header.SetContentType(t, params)
	p.header.Set("Content-Transfer-Encoding", "base64")
	disp := map[string]string{}
	if c.Filename != "" {
		disp["filename"] = c.Filename
	}
	if c.CID != "" {
		p.header.Set("Content-ID", "<"+strings.Trim(c.CID, "<>")+">")
		p.header.SetContentDisposition("inline", disp)
	} else {
		p.header.SetContentDisposition("attachment", disp)
	}
	return p
}

// writePart writes p as the message (top) or as a part of parent.
func writePart(b *bytes.Buffer, p *part, top bool, parent *message.Writer) error {
	var w *message.Writer
	var err error
	if top {
		w, err = message.CreateWriter(b, p.header)
	} else {
		w, err = parent.CreatePart(p.header)
	}
	if err != nil {
		return fmt.Errorf("api: compose: %w", err)
	}
	if p.children == nil {
		if _, err := w.Write(p.body); err != nil {
			return err
		}
		return w.Close()
	}
	for _, c := range p.children {
		if err := writePart(b, c, false, w); err != nil {
			return err
		}
	}
	return w.Close()
}
