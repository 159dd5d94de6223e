package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strconv"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

const localName = "relayq.test"

// testBody has a line that needs dot-stuffing and one that starts with two
// dots, so that byte-exact delivery covers the stuffing round trip.
var testBody = []byte("From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\n" +
	"line one\r\n.leading dot\r\n..two dots\r\n.\r\n \r\nlast line\r\n")

// newTransport returns a Transport for srv with short timeouts, trusting
// srv's certificate; edits adjust the Options.
func newTransport(t *testing.T, srv *smtptest.Server, edits ...func(*Options)) *Transport {
	t.Helper()
	o := Options{
		Network:         srv.Network(),
		Address:         srv.Addr(),
		LocalName:       localName,
		ConnectTimeout:  2 * time.Second,
		GreetingTimeout: 2 * time.Second,
		CommandTimeout:  2 * time.Second,
		DataTimeout:     2 * time.Second,
		TLS:             &tls.Config{RootCAs: srv.CertPool()},
	}
	for _, edit := range edits {
		edit(&o)
	}
	tr := New(o)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func message(from string, to ...string) *Message {
	return &Message{From: from, Recipients: to, Body: bytes.NewReader(testBody), Size: int64(len(testBody))}
}

func send(t *testing.T, tr *Transport, m *Message) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tr.Send(ctx, m)
}

// mustSend sends m and fails the test unless every recipient was accepted.
func mustSend(t *testing.T, tr *Transport, m *Message) *Result {
	t.Helper()
	res, err := send(t, tr, m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	for _, r := range res.Recipients {
		if r.Err != nil {
			t.Fatalf("Send: recipient %s: %v", r.Address, r.Err)
		}
	}
	return res
}

// wantError checks that err is an *Error at stage with the given class.
func wantError(t *testing.T, err error, stage Stage, temporary bool) *Error {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T), want *transport.Error at %v", err, err, stage)
	}
	if te.Stage != stage || te.Temporary() != temporary {
		t.Fatalf("err = %v: stage %v temporary %v, want stage %v temporary %v", err, te.Stage, te.Temporary(), stage, temporary)
	}
	return te
}

func lmtp(o *Options)       { o.LMTP = true }
func secure(o *Options)     { o.Secure = true }
func requireTLS(o *Options) { o.RequireTLS = true }
func credentials(user, pass string) func(*Options) {
	return func(o *Options) { o.Auth.Username, o.Auth.Password = user, pass }
}

func itoa(n int) string { return strconv.Itoa(n) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
