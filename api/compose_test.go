package api

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// TestComposeReadBack: a message with text, html, an inline image and two
// attachments is composed, queued and read back with go-message: the
// structure, every part's type, encoding, disposition and bytes, and the
// RFC 2047 headers.
func TestComposeReadBack(t *testing.T) {
	e := newEnv(t, envOptions{})
	png := []byte("\x89PNG\r\n\x1a\nbinary\x00\xff")
	a := e.postJSON(Message{
		From:    "Zoë Bot <bot@example.com>",
		To:      addressList{"Ana <ana@example.org>, bob@example.org"},
		Cc:      addressList{"cc@example.org"},
		Bcc:     addressList{"hidden@example.org"},
		ReplyTo: addressList{"help@example.com"},
		Subject: "Café ☕ ready",
		Text:    ptr("Hello Zoë,\nyour order is ready.\n" + strings.Repeat("long line ", 20) + "\n"),
		HTML:    ptr(`<p>Hello <b>Zoë</b></p><img src="cid:logo@x">`),
		Headers: map[string]string{"X-Order": "42", "X-Note": "déjà vu"},
		Attachments: []Attachment{
			{Filename: "logo.png", Content: ptr(base64.StdEncoding.EncodeToString(png)), Encoding: "base64", CID: "logo@x"},
			{Filename: "notes.txt", Content: ptr("plain notes\n")},
			{Filename: "résumé.pdf", Content: ptr("%PDF-1.4"), ContentType: "application/pdf"},
		},
	}, nil)
	if a.status != http.StatusAccepted || a.str("id") == "" || a.str("message_id") == "" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	raw := e.stored(a.str("id"))
	if !bytes.HasPrefix(raw, []byte("Received: ")) {
		t.Errorf("no Received header first:\n%.200s", raw)
	}
	if bytes.Contains(raw, []byte("hidden@example.org")) {
		t.Error("Bcc address appears in the message")
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in the stored message")
	}
	mr, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := mr.Header
	if s, _ := h.Subject(); s != "Café ☕ ready" {
		t.Errorf("Subject %q", s)
	}
	if v := h.Get("Subject"); !strings.Contains(v, "=?utf-8?") {
		t.Errorf("Subject not RFC 2047 encoded: %q", v)
	}
	if from, _ := h.AddressList("From"); len(from) != 1 || from[0].Name != "Zoë Bot" || from[0].Address != "bot@example.com" {
		t.Errorf("From %v", from)
	}
	if to, _ := h.AddressList("To"); len(to) != 2 || to[0].Name != "Ana" {
		t.Errorf("To %v", to)
	}
	if id, _ := h.MessageID(); id != a.str("message_id") {
		t.Errorf("Message-ID %q, answer %q", id, a.str("message_id"))
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if v, _ := h.Text("X-Note"); v != "déjà vu" {
		t.Errorf("X-Note %q", v)
	}
	if h.Get("X-Order") != "42" || h.Get("Reply-To") != "<help@example.com>" {
		t.Errorf("X-Order %q Reply-To %q", h.Get("X-Order"), h.Get("Reply-To"))
	}

	// Structure: mixed(related(alternative(text, html), logo), notes, pdf).
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	walk(t, ent, "", &got)
	want := []string{
		"multipart/mixed",
		".multipart/related",
		"..multipart/alternative",
		// Text is canonical in MIME: its line ends are CRLF.
		"...text/plain quoted-printable  Hello Zoë,\r\nyour order is ready.\r\n" + strings.Repeat("long line ", 20) + "\r\n",
		"...text/html quoted-printable  " + `<p>Hello <b>Zoë</b></p><img src="cid:logo@x">`,
		"..image/png base64 inline logo.png <logo@x> " + string(png),
		".text/plain base64 attachment notes.txt  plain notes\n",
		".application/pdf base64 attachment résumé.pdf  %PDF-1.4",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("parts:\n%q\nwant\n%q", got, want)
	}
}

// walk records each entity as "depth-dots type encoding disposition filename content-id body".
func walk(t *testing.T, e *message.Entity, depth string, out *[]string) {
	t.Helper()
	mt, _, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		*out = append(*out, depth+mt)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			walk(t, p, depth+".", out)
		}
	}
	disp, params, _ := e.Header.ContentDisposition()
	name := params["filename"]
	if name == "" {
		_, p, _ := mime.ParseMediaType(e.Header.Get("Content-Disposition"))
		name = p["filename"]
	}
	body, err := io.ReadAll(e.Body) // decoded by go-message
	if err != nil {
		t.Fatal(err)
	}
	*out = append(*out, strings.TrimSpace(depth+mt+" "+e.Header.Get("Content-Transfer-Encoding")+" "+disp+" "+name)+" "+e.Header.Get("Content-Id")+" "+string(body))
}

// TestComposeTextOnly: a text-only message is a single text/plain part
// with quoted-printable, not a multipart.
func TestComposeTextOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.postJSON(Message{From: "a@example.com", To: addressList{"b@example.org"}, Subject: "plain", Text: ptr("just text")}, nil)
	if a.status != http.StatusAccepted {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	ent, err := message.Read(bytes.NewReader(e.stored(a.str("id"))))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	walk(t, ent, "", &got)
	if len(got) != 1 || got[0] != "text/plain quoted-printable  just text\r\n" {
		t.Errorf("parts %q", got)
	}
}
