package smtptest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server. The zero value is a plain SMTP relay on
// 127.0.0.1 that accepts everything.
type Options struct {
	LMTP bool // speak LMTP: LHLO, and one reply per recipient after the dot
	Unix bool // listen on a Unix socket in a temporary directory

	TLS         bool // offer STARTTLS with a self-signed certificate
	ImplicitTLS bool // TLS from the first byte (smtps)
	// Certificate replaces the generated one for TLS and ImplicitTLS.
	Certificate *Certificate
	// ConfigureTLS, when set, adjusts the server's TLS configuration
	// (built from Certificate) before each handshake: to ask for client
	// certificates, cap the version…
	ConfigureTLS func(*tls.Config)
	// HideSTARTTLS, with TLS, leaves STARTTLS out of the EHLO reply but
	// still accepts the command (an offer stripped on the way).
	HideSTARTTLS bool

	// Auth enables AUTH PLAIN and LOGIN with these user → password pairs.
	// AUTH is offered with and without TLS: the server is permissive so
	// that clients are tested on their own refusal to send credentials.
	Auth map[string]string
	// AuthMechanisms are the mechanisms offered, in this order, from PLAIN,
	// LOGIN, CRAM-MD5 (checked against Auth), XOAUTH2 and OAUTHBEARER
	// (checked against Tokens); default PLAIN and LOGIN with Auth, and
	// XOAUTH2 and OAUTHBEARER with Tokens. LOGIN always uses the two-step
	// "Username:" exchange unless the client sends the user name as an
	// initial response.
	AuthMechanisms []string
	// Tokens enables AUTH XOAUTH2 and OAUTHBEARER with these user → OAuth2
	// access token pairs. Any other token gets the error challenge Gmail
	// sends (XOAUTH2: {"status":"401",…}; OAUTHBEARER: RFC 7628's
	// {"status":"invalid_token",…}), then, after the client's answer, 535.
	Tokens map[string]string

	// Chunking advertises CHUNKING (RFC 3030) and takes BDAT: every chunk
	// is read, even one refused; a message's Body step applies after its
	// LAST chunk as after DATA's final dot (no AfterBytes).
	Chunking bool

	MaxSize  int64    // advertised as SIZE; larger messages get 552 5.3.4
	SMTPUTF8 bool     // advertise SMTPUTF8 (otherwise MAIL … SMTPUTF8 gets 555)
	Without  []string // extensions to leave out of the EHLO reply, e.g. "8BITMIME"
	Domain   string   // the server's name in its greeting; default "smtptest.localhost"
	// DSN advertises DSN and takes RET and ENVID on MAIL, NOTIFY and ORCPT
	// on RCPT (otherwise they get 555, as RCPT parameters always do).
	DSN bool
	// OneHello refuses a second EHLO, LHLO or HELO in a session with
	// "503 5.5.1 Already identified", as OpenSMTPD does; after STARTTLS
	// one more is expected (RFC 3207 §4.2). A refused one is counted in
	// RepeatedHellos and the session goes on as identified before.
	OneHello bool
	// MaxMails, when set, refuses MAIL on a connection that has carried
	// this many messages with "452 4.5.3 Too many recipients: Too many
	// messages sent" and keeps the session open, as OpenSMTPD does with
	// `smtp limit max-mails`.
	MaxMails int
	// BareReplies sends every reply without its text, as RFC 5321 §4.2
	// allows (reply-line = reply-code [ SP textstring ] CRLF): a one-line
	// reply is its code alone ("250\r\n"); a multi-line one (EHLO) is
	// "250-\r\n", its other lines as they are (the extensions), then
	// "250\r\n". AUTH challenges (334) keep their text, which is data.
	BareReplies bool

	Script Script

	// OnData, when set, is called at two moments of every message
	// transaction, with the message as received: DataRead once its final
	// dot was read (before any Body step's Delay and the reply), and
	// DataAccepted right after a 2xx reply to it was written. It runs on
	// the connection's goroutine, so the server waits for it: a test uses
	// it to act at that exact moment (kill the client that is waiting for
	// the reply, or that has just read it).
	OnData func(at DataPoint, msg []byte)

	// Logf, when set, receives the conversation (e.g. t.Logf).
	Logf func(format string, args ...any)
}

// A DataPoint is a moment of a message transaction that Options.OnData
// reports.
type DataPoint int

const (
	// DataRead: the final dot was read; no reply was sent yet.
	DataRead DataPoint = iota
	// DataAccepted: a 2xx reply to the final dot was written (in LMTP,
	// after the replies for every recipient).
	DataAccepted
)

// Received is one transaction the server accepted.
type Received struct {
	ID         string   // the queue ID in the 250 reply
	Conn       int      // the connection it came on, from 1
	From       string   // MAIL FROM address, without brackets
	MailParams []string // MAIL FROM parameters as sent, e.g. "SIZE=123"
	// RcptParams holds the RCPT TO parameters as sent, by recipient, for
	// the recipients that gave any ("NOTIFY=SUCCESS,FAILURE").
	RcptParams map[string][]string
	To         []string // the recipients it was accepted for
	Body       []byte   // exactly the bytes of the message, dot-unstuffed
	Hello      string   // the EHLO/LHLO name in effect
	AuthUser   string   // "" when not authenticated
	TLS        bool
	ClientCert string // common name of the client's TLS certificate; "" when it sent none
}

// Server is a running scripted SMTP/LMTP peer.
type Server struct {
	opts    Options
	network string
	addr    string
	ln      net.Listener
	cert    *Certificate
	done    chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	script   Script
	pos      map[string]int
	msgs     []Received
	changed  chan struct{} // closed and replaced when msgs grows
	conns    int
	open     int
	maxOpen  int
	datas    int
	mails    []time.Time
	hellos   []string
	repeated int
	remotes  []string
	commands []string
	wire     []byte
	live     map[net.Conn]struct{}
	closed   bool
}

// NewServer starts a server; t.Cleanup closes it.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{
		opts:    opts,
		network: "tcp",
		done:    make(chan struct{}),
		script:  opts.Script,
		pos:     map[string]int{},
		changed: make(chan struct{}),
		live:    map[net.Conn]struct{}{},
	}
	if s.opts.Domain == "" {
		s.opts.Domain = "smtptest.localhost"
	}
	if opts.TLS || opts.ImplicitTLS {
		s.cert = opts.Certificate
		if s.cert == nil {
			s.cert = NewCertificate(t)
		}
	}
	var err error
	if opts.Unix {
		// t.TempDir can exceed the 108-byte limit on socket paths.
		dir, derr := os.MkdirTemp("", "smtptest")
		if derr != nil {
			t.Fatalf("smtptest: %v", derr)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		s.network, s.addr = "unix", filepath.Join(dir, "relay.sock")
		s.ln, err = net.Listen("unix", s.addr)
	} else {
		s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	if !opts.Unix {
		s.addr = s.ln.Addr().String()
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Network is "tcp" or "unix".
func (s *Server) Network() string { return s.network }

// Addr is host:port, or the socket path with Options.Unix.
func (s *Server) Addr() string { return s.addr }

// CertPool trusts the server's certificate (nil without TLS).
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	return s.cert.Pool
}

// Certificate is the server's certificate (nil without TLS).
func (s *Server) Certificate() *Certificate { return s.cert }

// SetScript replaces the script and starts its lists from the beginning.
// Connections already open follow the new script from their next command.
func (s *Server) SetScript(sc Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = sc
	s.pos = map[string]int{}
}

// Messages returns the transactions accepted so far, in order.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyMessages()
}

// copyMessages copies msgs deeply enough that later LMTP replies, which
// extend a Received's To, do not race with the caller; s.mu is held.
func (s *Server) copyMessages() []Received {
	msgs := slices.Clone(s.msgs)
	for i := range msgs {
		msgs[i].To = slices.Clone(msgs[i].To)
	}
	return msgs
}

// WaitMessages waits until at least n transactions were accepted and
// returns them; it fails the test after timeout. Call it from the test's
// goroutine.
func (s *Server) WaitMessages(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.msgs), s.changed
		if got >= n {
			msgs := s.copyMessages()
			s.mu.Unlock()
			return msgs
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("smtptest: %d messages received after %v, want %d", got, timeout, n)
			return nil
		}
	}
}

// Connections is how many connections were accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Remotes lists the client address of every connection accepted, in order.
func (s *Server) Remotes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.remotes)
}

// MaxConcurrent is the largest number of connections open at once.
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxOpen
}

// DataAttempts is how many DATA commands were received (accepted or not),
// and BDAT transactions (counted at their first chunk taken).
func (s *Server) DataAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.datas
}

// MailTimes lists when each MAIL command was received (accepted or not),
// in order, across connections.
func (s *Server) MailTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mails)
}

// CloseConnections closes every open connection at once, without a
// reply, the way a relay's idle timeout or restart does.
func (s *Server) CloseConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.live {
		c.Close()
	}
}

// Hellos lists the names given with every EHLO, LHLO and HELO, in order.
func (s *Server) Hellos() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hellos)
}

// RepeatedHellos is how many EHLO, LHLO or HELO commands came in a
// session that had already been identified (since its start or its
// STARTTLS), whether OneHello refused them or not.
func (s *Server) RepeatedHellos() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repeated
}

// Commands lists every command line received (AUTH exchanges included,
// message bodies excluded), in order, across connections.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commands)
}

// Wire is every byte clients sent, as seen on the socket: cleartext before
// TLS, ciphertext after. Tests use it to prove a secret never went out in
// clear.
func (s *Server) Wire() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.wire)
}

// Close stops the server, closes every connection and waits for its
// goroutines. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	for c := range s.live {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logf("accept: %v", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns++
		remote := ""
		if ra := nc.RemoteAddr(); ra != nil {
			remote = ra.String()
		}
		s.remotes = append(s.remotes, remote)
		s.open++
		s.maxOpen = max(s.maxOpen, s.open)
		s.live[nc] = struct{}{}
		id := s.conns
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(nc, id)
	}
}

func (s *Server) serve(nc net.Conn, id int) {
	defer s.wg.Done()
	ss := &session{srv: s, id: id, raw: nc, conn: &wireConn{Conn: nc, srv: s}}
	defer func() {
		nc.Close()
		s.mu.Lock()
		if !ss.left {
			s.open--
		}
		delete(s.live, nc)
		s.mu.Unlock()
	}()
	if s.opts.ImplicitTLS {
		if !ss.handshake() {
			return
		}
	}
	ss.run()
}

// next consumes the next step of the list pick selects, counted under key.
func (s *Server) next(key string, pick func(*Script) []Step) Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	steps := pick(&s.script)
	i := s.pos[key]
	s.pos[key] = i + 1
	if i < len(steps) {
		return steps[i]
	}
	return Step{}
}

// nextFor consumes the next step for addr in the map pick selects.
func (s *Server) nextFor(kind, addr string, pick func(*Script) map[string][]Step) Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, steps := stepList(pick(&s.script), addr)
	if steps == nil {
		return Step{}
	}
	key = kind + ":" + key
	i := s.pos[key]
	s.pos[key] = i + 1
	if i < len(steps) {
		return steps[i]
	}
	return Step{}
}

func (s *Server) record(r Received) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, r)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(s.msgs) - 1
}

func (s *Server) note(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("smtptest: "+format, args...)
	}
}

func (s *Server) tlsConfig() *tls.Config {
	c := s.cert.ServerConfig()
	if s.opts.ConfigureTLS != nil {
		s.opts.ConfigureTLS(c)
	}
	return c
}

func (s *Server) mechanisms() []string {
	if len(s.opts.AuthMechanisms) == 0 {
		var m []string
		if s.opts.Auth != nil {
			m = append(m, "PLAIN", "LOGIN")
		}
		if s.opts.Tokens != nil {
			m = append(m, "XOAUTH2", "OAUTHBEARER")
		}
		return m
	}
	var m []string
	for _, name := range s.opts.AuthMechanisms {
		m = append(m, strings.ToUpper(name))
	}
	return m
}

func (s *Server) without(ext string) bool {
	return slices.ContainsFunc(s.opts.Without, func(w string) bool { return strings.EqualFold(w, ext) })
}

// wireConn records what the client sends, below any TLS layer.
type wireConn struct {
	net.Conn
	srv *Server
}

func (c *wireConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.srv.note(func() { c.srv.wire = append(c.srv.wire, b[:n]...) })
	}
	return n, err
}

func (s *Server) onData(at DataPoint, msg []byte) {
	if s.opts.OnData != nil {
		s.opts.OnData(at, msg)
	}
}
