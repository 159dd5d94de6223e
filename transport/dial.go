package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/smtpcmd"
)

// maxPreamble bounds what transport reads itself before go-smtp takes over
// (greeting, EHLO and STARTTLS replies), so that a relay sending an endless
// line cannot exhaust memory. go-smtp bounds its own reads by line.
const maxPreamble = 64 << 10

// conn is one relay session in the pool.
type conn struct {
	id        uint64
	client    *smtp.Client
	cc        *clientConn // what client runs on (clientconn.go)
	io        *ioConn
	tls       bool
	sent      int       // transactions started on it
	idleSince time.Time // when it was last put back in the pool
	reused    bool      // it has been taken from the pool at least once
	dsnNoted  bool      // "relay lacks DSN" was logged for it (dsn.go)
	// tr is the exchange since the last Send took it (transcript.go); the
	// wire fills it in, the Send holding the connection takes it.
	tr transcript
	// Pipelined transactions (pipeline.go): the formatter of their
	// commands, the buffer they are written from and the reader of their
	// replies, made at the first.
	cmds    *smtpcmd.Formatter
	batch   []byte
	replies *textproto.Reader
}

// dialOnce opens a relay session ready for MAIL: connected, greeted, TLS
// as configured, EHLO/LHLO said with LocalName, authenticated. dial (in
// auth.go) calls it, and once more when the relay rejected an OAuth2 token.
//
// When TLS is opportunistic (STARTTLS, not RequireTLS), a relay that
// offers STARTTLS and then ends the handshake with its own alert
// internal_error (its TLS does not work: Debian 12's OpenSMTPD, built
// with OpenSSL 3, does that to every client) gets a second connection
// that stays in clear, as Postfix (smtp_tls_security_level = may) and
// exim (tls_tempfail_tryclear) would; otherwise each message to it would
// wait until it expired. A man in the middle gains nothing by it that
// stripping the STARTTLS offer would not give him. Every other failure
// still fails the session: a certificate that does not verify
// (tls.reject_unauthorized), a version below MinVersion, no common
// cipher. Credentials still need TLS unless AllowInsecureAuth.
func (t *Transport) dialOnce(ctx context.Context) (*conn, error) {
	c, err := t.session(ctx, true)
	if err == nil || t.opts.RequireTLS || t.opts.Secure || !relayTLSBroken(err) || ctx.Err() != nil {
		return c, err
	}
	t.log.Warn("relay's TLS handshake failed; delivering in clear on a new connection, as TLS is not required (tls.require_tls)",
		"relay", t.opts.Address, "err", err)
	if c, err = t.session(ctx, false); err != nil {
		return nil, err
	}
	c.tr.addString(dirNote, "the relay's TLS handshake failed on the connection before; this one stays in clear, as TLS is not required")
	return c, nil
}

// session connects and runs the session up to the first MAIL (setup); with
// starttls false, it does no STARTTLS whatever the options say.
func (t *Transport) session(ctx context.Context, starttls bool) (*conn, error) {
	if strings.ContainsFunc(t.localName, badAddressRune) {
		return nil, &Error{Stage: StageHello, Err: fmt.Errorf("invalid local name %q", t.localName)}
	}
	nc, err := t.connect(ctx)
	if err != nil {
		return nil, &Error{Stage: StageDial, Err: ctxCause(ctx, err)}
	}
	c := &conn{id: t.nextID.Add(1), io: newIOConn(nc, t.opts.CommandTimeout)}
	unbind := c.io.bind(ctx)
	defer unbind()
	if err := t.setup(ctx, c, starttls); err != nil {
		nc.Close()
		err = t.cleanErr(err)
		var te *Error
		if errors.As(err, &te) {
			te.Err = ctxCause(ctx, te.Err)
			te.Transcript = c.tr.take()
		}
		t.log.Debug("relay session failed", "conn", c.id, "relay", t.opts.Address, "err", err)
		return nil, err
	}
	t.log.Debug("relay session ready", "conn", c.id, "relay", t.opts.Address, "tls", c.tls, "auth", t.opts.Auth.Username != "")
	return c, nil
}

// setup runs the session up to the first MAIL. transport reads the greeting,
// says EHLO (LHLO) and does STARTTLS itself, so that the EHLO before TLS
// carries LocalName (go-smtp's client would say "localhost") and STARTTLS
// can be opportunistic; then it hands the session to go-smtp, on a
// clientConn that answers go-smtp's own hellos with the replies transport
// got, so that the relay hears one hello per session (and one more after
// STARTTLS). With starttls false it does no STARTTLS.
func (t *Transport) setup(ctx context.Context, c *conn, starttls bool) error {
	var nc net.Conn = c.io
	if t.opts.Secure {
		tc, err := t.handshake(ctx, c.io)
		if err != nil {
			return &Error{Stage: StageTLS, Err: err}
		}
		nc, c.tls = tc, true
	}
	// The debug log and Verify see the conversation above TLS (debug.go);
	// the reply readers see it with replies read as RFC 5321 writes them
	// (bare codes, broken multi-line replies: replyconn.go).
	rc := newReplyConn(t.watch(ctx, c, nc))
	br := bufio.NewReader(io.LimitReader(rc, maxPreamble))
	greeting, err := t.readReply(rc, br, 220, t.opts.GreetingTimeout)
	if err != nil {
		return &Error{Stage: StageGreeting, Err: err}
	}
	tryTLS := starttls && !t.opts.Secure && (t.opts.RequireTLS || !t.opts.IgnoreTLS)
	if tryTLS && t.opts.IgnoreTLS { // and RequireTLS: the two contradict each other
		return &Error{Stage: StageTLS, Err: fmt.Errorf("%w: IgnoreTLS forbids STARTTLS", ErrTLSUnavailable)}
	}
	hellos, err := t.hello(rc, br)
	if err != nil {
		return err
	}
	if tryTLS {
		upgraded, err := t.startTLS(ctx, c, rc, br, hellos)
		if err != nil {
			return err
		}
		if upgraded != nil {
			// RFC 3207 §4.2: what was learnt before TLS is forgotten;
			// hello again, over TLS.
			rc = newReplyConn(t.watch(ctx, c, upgraded)) // as above, after STARTTLS
			br = bufio.NewReader(io.LimitReader(rc, maxPreamble))
			if hellos, err = t.hello(rc, br); err != nil {
				return err
			}
		}
	}
	// Whatever the relay sent after its hello reply belongs to go-smtp.
	rest, _ := br.Peek(br.Buffered())
	c.cc = &clientConn{replayConn: replayConn{Conn: rc, pending: greeting}, hellos: hellos, rest: rest}
	if t.opts.LMTP {
		c.client = smtp.NewClientLMTP(c.cc)
	} else {
		c.client = smtp.NewClient(c.cc)
	}
	c.client.CommandTimeout = t.opts.CommandTimeout
	c.client.SubmissionTimeout = t.opts.DataTimeout
	if err := c.client.Hello(t.localName); err != nil {
		return &Error{Stage: StageHello, Err: err}
	}
	if t.opts.Auth.Username != "" {
		mech, err := t.authenticate(c)
		noteAuth(ctx, t.opts.Auth.Username, mech, err) // for Verify's report (verify.go)
		if err != nil {
			return &Error{Stage: StageAuth, Err: err}
		}
	}
	return nil
}

// hello says EHLO (LHLO) with LocalName and, if the relay refuses it as
// unknown (500, 502), HELO, as go-smtp's client would. It returns the
// replies by verb, as wire bytes, for the clientConn to give go-smtp.
func (t *Transport) hello(nc net.Conn, br *bufio.Reader) (map[string][]byte, error) {
	verb := "EHLO"
	if t.opts.LMTP {
		verb = "LHLO"
	}
	reply, err := t.command(nc, br, 250, verb+" "+t.localName)
	hellos := map[string][]byte{verb: reply}
	var se *smtp.SMTPError
	if err != nil && errors.As(err, &se) && (se.Code == 500 || se.Code == 502) {
		// A relay that does not know EHLO knows no extensions.
		reply, err = t.command(nc, br, 250, "HELO "+t.localName)
		hellos["HELO"] = reply
	}
	if err != nil {
		return nil, &Error{Stage: StageHello, Err: err}
	}
	return hellos, nil
}

// startTLS upgrades the connection if the relay offers STARTTLS in its
// hello reply. With RequireTLS it sends STARTTLS even when the relay does
// not offer it (a man in the middle may have stripped the offer), and
// fails if the relay refuses. It returns nil (and no error) when the
// session stays in clear, which only happens when TLS is not required:
// the relay offers no STARTTLS, or refuses the one it offers.
func (t *Transport) startTLS(ctx context.Context, c *conn, rc *replyConn, br *bufio.Reader, hellos map[string][]byte) (net.Conn, error) {
	offered := hasExtension(string(hellos["EHLO"])+string(hellos["LHLO"]), "STARTTLS")
	if !offered && !t.opts.RequireTLS {
		t.log.Debug("relay offers no STARTTLS; continuing in clear", "conn", c.id, "relay", t.opts.Address)
		return nil, nil
	}
	var se *smtp.SMTPError
	if _, err := t.command(rc, br, 220, "STARTTLS"); err != nil {
		if !offered && errors.As(err, &se) {
			err = fmt.Errorf("%w: the relay does not offer STARTTLS and refused it: %w", ErrTLSUnavailable, err)
		}
		if !t.opts.RequireTLS && errors.As(err, &se) && se.Code != 421 {
			// It offered STARTTLS and then refused it ("454 4.7.0 TLS not
			// available due to local problem": Postfix with a broken key
			// or certificate): the session goes on in clear, as it would
			// had there been no offer (RFC 3207 §4), and as Postfix and
			// exim go on.
			t.log.Warn("relay refused the STARTTLS it offers; going on in clear, as TLS is not required (tls.require_tls)",
				"conn", c.id, "relay", t.opts.Address, "reply", se.Error())
			c.tr.addString(dirNote, "the relay refused STARTTLS; this session stays in clear, as TLS is not required")
			return nil, nil
		}
		return nil, &Error{Stage: StageTLS, Err: err}
	}
	if br.Buffered() > 0 || rc.buffered() > 0 {
		// Bytes after the 220 would be read as if they came over TLS
		// (the CVE-2011-0411 class of injection).
		return nil, &Error{Stage: StageTLS, Err: errors.New("relay sent data after its STARTTLS reply")}
	}
	tc, err := t.handshake(ctx, c.io)
	if err != nil {
		return nil, &Error{Stage: StageTLS, Err: err}
	}
	c.tls = true
	return tc, nil
}

// handshake runs the TLS client handshake on the raw connection within
// CommandTimeout, verifying the certificate as t.tlsConfig says.
func (t *Transport) handshake(ctx context.Context, raw *ioConn) (*tls.Conn, error) {
	tc := tls.Client(raw, t.tlsConfig)
	hctx, cancel := context.WithTimeout(ctx, t.opts.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, handshakeError(err)
	}
	st := tc.ConnectionState()
	t.log.Debug("relay TLS established", "relay", t.opts.Address,
		"version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return tc, nil
}

// command writes one command line and reads the reply, which must have
// code want; it returns the reply as the relay sent it (all lines, CRLF).
func (t *Transport) command(nc net.Conn, br *bufio.Reader, want int, line string) ([]byte, error) {
	if _, err := nc.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	return t.readReply(nc, br, want, t.opts.CommandTimeout)
}

// readReply reads one reply within timeout and returns it re-encoded as
// wire bytes, ready to be replayed to go-smtp. A reply with another code
// than want is also returned as an *smtp.SMTPError.
func (t *Transport) readReply(nc net.Conn, br *bufio.Reader, want int, timeout time.Duration) ([]byte, error) {
	nc.SetReadDeadline(time.Now().Add(timeout))
	defer nc.SetReadDeadline(time.Time{})
	code, msg, err := textproto.NewReader(br).ReadResponse(want)
	var pe *textproto.Error
	if err != nil && !errors.As(err, &pe) {
		return nil, err
	}
	lines := strings.Split(msg, "\n")
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%03d%s%s\r\n", code, sep, l)
	}
	if pe != nil {
		return []byte(b.String()), toSMTPError(pe)
	}
	return []byte(b.String()), nil
}

// toSMTPError is go-smtp's own conversion (client.go toSMTPErr), which is
// unexported: the enhanced code is parsed from the first line and stripped
// from continuation lines.
func toSMTPError(pe *textproto.Error) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: pe.Code, Message: pe.Msg}
	first, rest, ok := strings.Cut(pe.Msg, " ")
	if !ok {
		return se
	}
	var ec smtp.EnhancedCode
	if n, err := fmt.Sscanf(first, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); err != nil || n != 3 ||
		fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2]) != first {
		return se
	}
	se.EnhancedCode = ec
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}

// hasExtension reports whether an EHLO reply (wire bytes) lists keyword.
func hasExtension(reply, keyword string) bool {
	for i, line := range strings.Split(strings.TrimRight(reply, "\r\n"), "\r\n") {
		if i == 0 || len(line) < 4 {
			continue // the first line is the relay's name
		}
		name, _, _ := strings.Cut(line[4:], " ")
		if strings.EqualFold(name, keyword) {
			return true
		}
	}
	return false
}

// ctxCause prefixes err with the context's error when the context ended,
// so that an aborted Send says why instead of only "i/o timeout".
func ctxCause(ctx context.Context, err error) error {
	if ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", ctx.Err(), err)
}

// handshakeError says why a TLS handshake failed in words an operator can
// act on; the crypto/tls error stays inside for errors.As.
func handshakeError(err error) error {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("the relay's certificate is not signed by a trusted authority "+
			"(self-signed, or a private CA that is not trusted): %w", err)
	case errors.As(err, &he) && he.Certificate != nil:
		return fmt.Errorf("the relay's certificate is not valid for the name %s (it names %s): %w",
			he.Host, certNames(he.Certificate), err)
	case errors.As(err, &ve):
		return fmt.Errorf("the relay's certificate is refused: %w", err)
	}
	return fmt.Errorf("TLS handshake: %w", err)
}

// relayTLSBroken reports whether a TLS handshake ended with the relay's
// own alert internal_error: its TLS does not work, and nothing relayq
// offers (version, ciphers) or checks (the certificate) is the cause.
func relayTLSBroken(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && oe.Err.Error() == "tls: internal error"
}

// certNames lists the DNS names and IP addresses a certificate is valid for.
func certNames(c *x509.Certificate) string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no host name"
	}
	return strings.Join(names, ", ")
}
