package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// TestInteropGoSMTPServer runs transport against go-smtp's own server, an
// implementation independent of smtptest: STARTTLS done by transport, then
// AUTH PLAIN and a transaction done by go-smtp's client.
func TestInteropGoSMTPServer(t *testing.T) {
	cert := smtptest.NewCertificate(t)
	be := &interopBackend{}
	s := smtp.NewServer(be)
	s.Domain = "interop.localhost"
	s.TLSConfig = cert.ServerConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })

	tr := New(Options{
		Address: ln.Addr().String(), LocalName: localName,
		TLS:  &tls.Config{RootCAs: cert.Pool},
		Auth: Auth{Username: "alice", Password: "pw"},
	})
	defer tr.Close()
	for range 2 {
		mustSend(t, tr, message("s@example.org", "r@example.net"))
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.bodies) != 2 || !bytes.Equal(be.bodies[1], testBody) {
		t.Fatalf("go-smtp server got %d bodies, want 2 of %q", len(be.bodies), testBody)
	}
	if be.sessions != 1 || !be.tls || be.user != "alice" || be.helo != localName {
		t.Errorf("sessions %d, tls %v, user %q, helo %q; want 1 TLS session as alice, %q", be.sessions, be.tls, be.user, be.helo, localName)
	}
}

type interopBackend struct {
	mu       sync.Mutex
	sessions int
	tls      bool
	helo     string
	user     string
	bodies   [][]byte
}

// NewSession is called at the first EHLO and again after STARTTLS; only the
// TLS session counts.
func (b *interopBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := c.TLSConnectionState(); ok {
		b.sessions++
		b.tls, b.helo = true, c.Hostname()
	}
	return &interopSession{b: b}, nil
}

type interopSession struct{ b *interopBackend }

func (s *interopSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *interopSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "alice" || pass != "pw" {
			return errors.New("bad credentials")
		}
		s.b.mu.Lock()
		s.b.user = user
		s.b.mu.Unlock()
		return nil
	}), nil
}

func (s *interopSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *interopSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *interopSession) Reset()                               {}
func (s *interopSession) Logout() error                        { return nil }

func (s *interopSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.bodies = append(s.b.bodies, body)
	s.b.mu.Unlock()
	return nil
}
