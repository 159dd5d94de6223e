package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"relayq/queue"
	"relayq/spool"
)

// accepted is the 202 answer.
type accepted struct {
	ID        string `json:"id"`
	MessageID string `json:"message_id"`
}

// maxKeyLength bounds an Idempotency-Key.
const maxKeyLength = 255

// submit is POST /v1/messages: a JSON message to compose, or a raw
// message/rfc822 with the envelope in the query. It answers 202 only after
// the message (and its idempotency key) has committed.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	cl, _ := r.Context().Value(viaKey{}).(caller)
	hold := s.opts.Intake.HoldMemory(cl.submitter())
	defer hold.Release()
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestSize), hold)
	if err != nil {
		var mb *http.MaxBytesError
		switch {
		case errors.As(err, &mb):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body larger than %d bytes", s.opts.MaxRequestSize), "")
		case errors.As(err, new(*spool.SubmitError)):
			s.refused(w, cl, fromSubmit(err, nil))
		default:
			writeError(w, http.StatusBadRequest, "bad_request", "cannot read the request body", "")
		}
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxKeyLength || hasControl(key) {
		writeError(w, http.StatusBadRequest, "bad_idempotency_key", "Idempotency-Key must be at most 255 printable characters", "Idempotency-Key")
		return
	}
	rec := queue.KeyRecord{Hash: requestHash(r, body)}
	if key != "" {
		key = cl.scope() + key
		defer s.keys.lock(key)()
		if done := s.replay(w, key, rec.Hash); done {
			return
		}
	}
	sub, fields, msgID, aerr := s.build(r.Context(), cl, r, body)
	if aerr != nil {
		s.refused(w, cl, aerr)
		return
	}
	if err := hold.Grow(int64(len(body) + len(sub.Body))); err != nil {
		s.refused(w, cl, fromSubmit(err, nil))
		return
	}
	rec.MessageID = msgID
	sub.Key, sub.Record = key, rec
	id, replayed, err := s.opts.Intake.Submit(r.Context(), sub)
	if err != nil {
		s.refused(w, cl, fromSubmit(err, fields))
		return
	}
	if replayed { // another process's commit, or a race the lock did not see
		s.replay(w, key, rec.Hash)
		return
	}
	writeJSON(w, http.StatusAccepted, accepted{ID: id, MessageID: msgID})
}

// replay answers a request whose key is stored already: the first
// result, or 409 for a different request. It returns false when the key
// is not stored (or has expired).
func (s *Server) replay(w http.ResponseWriter, key, hash string) bool {
	prior, err := s.opts.Queue.LookupKey(key)
	switch {
	case err != nil:
		s.log.Error("cannot read idempotency key", "err", err)
		writeAPIError(w, &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "temporary local problem, try again later", RetryAfter: 30})
		return true
	case prior == nil:
		return false
	case prior.Hash != hash:
		writeAPIError(w, fromSubmit(queue.ErrKeyConflict, nil))
		return true
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSON(w, http.StatusAccepted, accepted{ID: prior.ID, MessageID: prior.MessageID})
	return true
}

func (s *Server) refused(w http.ResponseWriter, cl caller, e *apiError) {
	s.log.Info("submission refused", "uid", cl.uid, "addr", cl.addr, "status", e.Status, "code", e.Code, "field", e.Field, "err", e.cause)
	writeAPIError(w, e)
}

// submitter is who the caller is for intake: the uid on the socket; on
// TCP, the address and the token's user name "api-token" ([limits] may
// name it).
func (c caller) submitter() queue.Submitter {
	sub := queue.Submitter{UID: c.uid, Via: "api"}
	if c.tcp {
		sub.Addr, sub.User = c.addr, "api-token"
	}
	return sub
}

// readBody reads the request body into a buffer reserved from intake's
// memory budget as it grows.
func readBody(r io.Reader, hold *spool.MemoryHold) ([]byte, error) {
	var b bytes.Buffer
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if gerr := hold.Grow(int64(b.Len() + n)); gerr != nil {
				return nil, gerr
			}
			b.Write(chunk[:n])
		}
		if err == io.EOF {
			return b.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// scope keeps one caller's keys apart from another's: a local user cannot
// replay (and so learn the queue ID of) another user's request.
func (c caller) scope() string {
	if c.tcp {
		return "tcp:"
	}
	return "uid " + strconv.Itoa(c.uid) + ":"
}

// requestHash identifies a request for the idempotency check: its media
// type, its query and its body.
func requestHash(r *http.Request, body []byte) string {
	t, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", t, r.URL.RawQuery)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// build turns the request into a spool.Submission: fields names the JSON
// field of each envelope recipient, msgID is the message's Message-ID.
func (s *Server) build(ctx context.Context, cl caller, r *http.Request, body []byte) (sub spool.Submission, fields []string, msgID string, e *apiError) {
	sub.Submitter, sub.With = cl.submitter(), "HTTP"
	t, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch t {
	case "message/rfc822":
		sub.From, sub.Recipients, fields, sub.Body, msgID, e = s.buildRaw(r, body)
	case "application/json", "":
		sub.From, sub.Recipients, fields, sub.Body, msgID, e = s.buildJSON(ctx, cl, body)
	default:
		e = &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send application/json or message/rfc822"}
	}
	return sub, fields, msgID, e
}

// buildRaw takes a message the app built itself; the envelope is in the
// query: from=ADDR&to=ADDR&to=ADDR. A Message-ID is added when missing,
// so that the answer can name it.
func (s *Server) buildRaw(r *http.Request, body []byte) (from string, rcpts, fields []string, msg []byte, msgID string, e *apiError) {
	q := r.URL.Query()
	if from, e = oneAddress(q.Get("from"), "from", true); e != nil {
		return
	}
	for i, v := range q["to"] {
		list, err := mail.ParseAddressList(v)
		if err != nil {
			e = badRequest("bad_recipient", fmt.Sprintf("to[%d]", i), "not an address list: "+err.Error())
			return
		}
		for _, a := range list {
			rcpts, fields = append(rcpts, a.Address), append(fields, fmt.Sprintf("to[%d]", i))
		}
	}
	if len(rcpts) == 0 {
		e = badRequest("no_recipients", "to", "give the recipients as to=ADDRESS in the query")
		return
	}
	m, err := mail.ReadMessage(bytes.NewReader(body))
	if err == nil {
		msgID = strings.Trim(m.Header.Get("Message-ID"), "<> ")
	}
	if msgID == "" {
		msgID = newMessageID(s.opts.Hostname)
		body = append([]byte("Message-ID: <"+msgID+">\r\n"), body...)
	}
	return from, rcpts, fields, body, msgID, nil
}

func newMessageID(host string) string {
	var b [12]byte
	randRead(b[:])
	return fmt.Sprintf("%s.%s@%s", time.Now().UTC().Format("20060102150405"), hex.EncodeToString(b[:]), host)
}

// buildJSON decodes and composes a JSON message.
func (s *Server) buildJSON(ctx context.Context, cl caller, body []byte) (from string, rcpts, fields []string, msg []byte, msgID string, e *apiError) {
	var m Message
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		e = badRequest("bad_json", jsonField(err), "the request is not a valid message: "+err.Error())
		return
	}
	if hasControl(m.Subject) {
		e = badRequest("bad_subject", "subject", "subject: control characters")
		return
	}
	a, e := parseAddrs(&m)
	if e != nil {
		return
	}
	from, rcpts, fields, e = envelopeOf(&m, a, s.opts.DefaultFrom)
	if e != nil {
		return
	}
	if e = checkHeaders(m.Headers); e != nil {
		return
	}
	atts, e := s.contents(ctx, cl, m.Attachments)
	if e != nil {
		return
	}
	msg, msgID, err := compose(&m, a, atts, s.opts.Hostname, time.Now())
	if err != nil {
		e = badRequest("bad_message", "", "cannot compose the message")
		e.cause = err
	}
	return from, rcpts, fields, msg, msgID, e
}

func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}

// contents fetches every attachment's bytes, under the listener's access
// rules and the size and count limits.
func (s *Server) contents(ctx context.Context, cl caller, atts []Attachment) ([]content, *apiError) {
	if len(atts) > s.opts.MaxAttachments {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "too_many_attachments", Field: "attachments",
			Message: fmt.Sprintf("more than %d attachments", s.opts.MaxAttachments)}
	}
	access := s.opts.SocketAccess
	if cl.tcp {
		access = s.opts.TCPAccess
	}
	out := make([]content, 0, len(atts))
	for i, a := range atts {
		data, e := s.content(ctx, cl, access, a, fmt.Sprintf("attachments[%d]", i))
		if e != nil {
			return nil, e
		}
		out = append(out, content{Attachment: a, data: data})
	}
	return out, nil
}

func (s *Server) content(ctx context.Context, cl caller, access Access, a Attachment, field string) ([]byte, *apiError) {
	n := 0
	for _, set := range []bool{a.Content != nil, a.Path != "", a.Href != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, badRequest("bad_attachment", field, field+": give exactly one of content, path and href")
	}
	if hasControl(a.Filename) || hasControl(a.ContentType) || hasControl(a.CID) {
		return nil, badRequest("bad_attachment", field, field+": control characters in filename, content_type or cid")
	}
	var data []byte
	var err error
	switch {
	case a.Content != nil:
		data = []byte(*a.Content)
		if a.Encoding == "base64" {
			if data, err = base64.StdEncoding.DecodeString(*a.Content); err != nil {
				return nil, badRequest("bad_attachment", field+".content", field+": content is not valid base64")
			}
		}
	case a.Path != "":
		if !access.Files {
			return nil, badRequest("file_access_disabled", field+".path", field+": file access is disabled on this listener")
		}
		data, err = readFile(s.opts.FileRoots, a.Path, cl.uid, s.opts.MaxAttachmentSize)
		if err != nil && !errors.Is(err, errTooLarge) {
			s.log.Info("attachment file refused", "uid", cl.uid, "path", a.Path, "err", err)
			return nil, badRequest("file_refused", field+".path", field+": the file is not readable under the allowed file roots")
		}
	default:
		if !access.URLs {
			return nil, badRequest("url_access_disabled", field+".href", field+": URL access is disabled on this listener")
		}
		data, err = s.fetch.fetch(ctx, a.Href)
		if err != nil && !errors.Is(err, errTooLarge) {
			s.log.Info("attachment URL refused", "uid", cl.uid, "href", a.Href, "err", err)
			return nil, badRequest("url_refused", field+".href", field+": "+urlRefusal(err))
		}
	}
	if errors.Is(err, errTooLarge) || int64(len(data)) > s.opts.MaxAttachmentSize {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "attachment_too_large", Field: field,
			Message: fmt.Sprintf("%s: larger than %d bytes", field, s.opts.MaxAttachmentSize)}
	}
	return data, nil
}

// urlRefusal says why a fetch failed, without internal detail.
func urlRefusal(err error) string {
	var te interface{ Timeout() bool }
	switch {
	case errors.Is(err, errPrivate):
		return "the URL leads to a loopback, private or non-public address"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &te) && te.Timeout():
		return "fetching the URL timed out"
	case strings.Contains(err.Error(), "scheme"):
		return "only http and https URLs are allowed"
	}
	return "the URL could not be fetched"
}
