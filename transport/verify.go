package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Report is what Verify found out about the relay. Fields stay empty for
// the steps the session did not reach.
type Report struct {
	Address string `json:"address"`         // Options.Address: host:port, or the socket path
	Proxy   string `json:"proxy,omitempty"` // the proxy, without credentials; "" when direct
	// Connected is the address the connection went to: the relay's IP and
	// port (its name resolved), the proxy's when there is one, or the
	// socket path. Empty when no conversation began (no connection, or an
	// implicit TLS handshake that failed).
	Connected string `json:"connected,omitempty"`
	// Greeting is the relay's 220 reply as sent, e.g.
	// "220 mx.example.com ESMTP Postfix".
	Greeting string `json:"greeting,omitempty"`
	// Extensions are the keywords, with their parameters, of the relay's
	// last EHLO/LHLO reply: after TLS, the ones delivery uses
	// ("SIZE 10240000", "AUTH PLAIN LOGIN").
	Extensions []string `json:"extensions"`
	// TLS is nil when the session stayed in clear.
	TLS *TLSReport `json:"tls"`
	// Auth is nil when no credentials are configured.
	Auth *AuthReport `json:"auth"`
	// Mail and Rcpt are the replies to the Envelope, when one was given.
	Mail *EnvelopeReply  `json:"mail,omitempty"`
	Rcpt []EnvelopeReply `json:"rcpt,omitempty"`
}

// TLSReport describes the TLS session and the relay's certificate.
type TLSReport struct {
	Version     string `json:"version"` // "TLS 1.3"
	CipherSuite string `json:"cipher_suite"`
	STARTTLS    bool   `json:"starttls"` // upgraded with STARTTLS; false: implicit TLS
	// ServerName is the name the certificate must match.
	ServerName string `json:"server_name"`
	// Enforced: the certificate had to verify for the session to go on
	// (InsecureSkipVerify unset, i.e. reject_unauthorized).
	Enforced bool `json:"enforced"`
	// Verified: the chain leads to a trusted CA and the certificate
	// matches ServerName. When it is false, VerifyError says why.
	Verified    bool      `json:"verified"`
	VerifyError string    `json:"verify_error,omitempty"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// AuthReport says how AUTH went.
type AuthReport struct {
	User string `json:"user"`
	// Mechanism is the SASL mechanism used; "" when none could be chosen
	// (the error says why).
	Mechanism string `json:"mechanism"`
	OK        bool   `json:"ok"`
	// Reply is the relay's final reply to AUTH; "" when AUTH was not sent.
	Reply string `json:"reply,omitempty"`
}

// EnvelopeReply is the relay's reply to MAIL FROM or to one RCPT TO.
type EnvelopeReply struct {
	Address string `json:"address"`
	OK      bool   `json:"ok"`
	// Reply is the relay's reply as sent ("250 2.1.5 Ok"), or relayq's own
	// refusal of an address it would not put on the wire.
	Reply string `json:"reply"`
}

// Envelope is what Verify asks the relay about once the session is ready:
// MAIL FROM:<From> ("" is the null sender), RCPT TO for each of To, then
// RSET. No DATA is ever sent.
type Envelope struct {
	From string
	To   []string
}

// Verify opens a new session to the relay the way Send does (same
// connection, proxy, TLS and AUTH code and Options), reports what it
// found, and ends it with QUIT. With env it goes on to MAIL FROM and RCPT
// TO for every recipient, then RSET: a sender or recipient the relay will
// refuse shows up without sending mail.
//
// The error is nil when the relay is ready (and took the envelope). It is
// an *Error otherwise, like Send's: the stage that failed and the relay's
// reply; for refused recipients, the first refusal (Stage StageRcpt), with
// every recipient's reply in the Report. The Report is never nil and holds
// what was learnt before the failure.
//
// The connection is not taken from the pool, nor counted in
// MaxConnections.
func (t *Transport) Verify(ctx context.Context, env *Envelope) (*Report, error) {
	rec := &recorder{report: &Report{Address: t.opts.Address, Proxy: t.proxyName()}}
	c, err := t.dial(context.WithValue(ctx, recorderKey{}, rec))
	if err != nil {
		rec.failedTLS(t, err)
		return rec.report, err
	}
	unbind := c.io.bind(ctx)
	defer unbind()
	defer t.close(c, true) // QUIT, before unbind
	if env != nil {
		err = t.verifyEnvelope(c, env, rec)
		if err != nil {
			err = t.cleanErr(ctxCause(ctx, err))
		}
	}
	return rec.report, err
}

// verifyEnvelope runs MAIL FROM, RCPT TO each recipient, and RSET.
func (t *Transport) verifyEnvelope(c *conn, env *Envelope, rec *recorder) error {
	rep := rec.report
	rep.Mail = &EnvelopeReply{Address: env.From}
	if err := checkAddress(env.From, true); err != nil {
		le := invalidSender(err)
		rep.Mail.Reply = replyText(le.Reply)
		return &Error{Stage: StageMail, Err: le}
	}
	if err := c.client.Mail(env.From, nil); err != nil {
		rep.Mail.Reply = t.cleanText(rec.replyTo(err))
		c.client.Reset()
		return &Error{Stage: StageMail, Err: err}
	}
	rep.Mail.OK, rep.Mail.Reply = true, rec.last
	var first error
	for _, to := range env.To {
		r := EnvelopeReply{Address: to}
		err := checkAddress(to, false)
		if err != nil {
			le := invalidRecipient(err)
			r.Reply, err = replyText(le.Reply), le
		} else if err = c.client.Rcpt(to, nil); err != nil {
			r.Reply = t.cleanText(rec.replyTo(err))
		} else {
			r.OK, r.Reply = true, rec.last
		}
		rep.Rcpt = append(rep.Rcpt, r)
		var se *smtp.SMTPError
		if err != nil && (!errors.As(err, &se) || se.Code == 421) {
			return &Error{Stage: StageRcpt, Err: err} // the session is gone
		}
		if err != nil && first == nil {
			first = &Error{Stage: StageRcpt, Err: err}
		}
	}
	// go-smtp forgets the EHLO at RSET and says it again before QUIT;
	// the clientConn answers it without sending it (clientconn.go).
	if err := c.client.Reset(); err != nil && first == nil {
		first = &Error{Stage: StageRcpt, Err: err}
	}
	return first
}

// recorderKey carries Verify's recorder in the context of the dial, for
// watch and noteAuth.
type recorderKey struct{}

func recorderFrom(ctx context.Context) *recorder {
	rec, _ := ctx.Value(recorderKey{}).(*recorder)
	return rec
}

// recorder fills a Report from the conversation a wire sees. Its methods
// do nothing on a nil recorder (a dial that is not Verify's). It is only
// used by the goroutine running the dial.
type recorder struct {
	report    *Report
	verb      string // the last command sent, upper case; "" before any
	last      string // the last complete reply, lines joined with "\n"
	authReply string // the relay's final reply to AUTH
}

// connected starts the report of a new connection (dial may open a second
// one, after the relay rejected an OAuth2 token).
func (r *recorder) connected(t *Transport, remote string) {
	if r == nil {
		return
	}
	*r.report = Report{Address: t.opts.Address, Proxy: t.proxyName(), Connected: remote}
	r.verb, r.last, r.authReply = "", "", ""
}

func (r *recorder) command(verb string) {
	if r != nil {
		r.verb = verb
	}
}

// reply records one complete reply of the relay.
func (r *recorder) reply(lines []string) {
	if r == nil {
		return
	}
	r.last = strings.Join(lines, "\n")
	code := r.last[:min(3, len(r.last))]
	switch r.verb {
	case "":
		r.report.Greeting = r.last
	case "EHLO", "LHLO", "HELO":
		if code == "250" {
			r.report.Extensions = extensions(lines)
		}
	case "AUTH":
		if !strings.HasPrefix(code, "3") {
			r.authReply = r.last
		}
	}
}

// replyTo is the reply behind err: the relay's last reply when err is an
// SMTP error, else err's text (a broken connection).
func (r *recorder) replyTo(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) && r.last != "" {
		return r.last
	}
	return err.Error()
}

// replyText writes a reply relayq makes up as the relay would send it:
// "553 5.1.3 text".
func replyText(se *smtp.SMTPError) string {
	s := strconv.Itoa(se.Code) + " "
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != smtp.EnhancedCodeNotSet {
		s += fmt.Sprintf("%d.%d.%d ", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return s + se.Message
}

// extensions lists the keywords of an EHLO reply (its lines after the
// first, without the code).
func extensions(lines []string) []string {
	ext := []string{}
	for _, l := range lines[1:] {
		if len(l) > 4 {
			ext = append(ext, l[4:])
		}
	}
	return ext
}

// tlsEstablished records the TLS session of the connection.
func (r *recorder) tlsEstablished(t *Transport, st tls.ConnectionState) {
	if r == nil {
		return
	}
	rep := &TLSReport{
		Version:     tls.VersionName(st.Version),
		CipherSuite: tls.CipherSuiteName(st.CipherSuite),
		STARTTLS:    !t.opts.Secure,
	}
	t.checkCertificate(rep, st.PeerCertificates, nil)
	r.report.TLS = rep
}

// failedTLS records the certificate that made the handshake fail, when
// that is why the session failed.
func (r *recorder) failedTLS(t *Transport, err error) {
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		return
	}
	rep := &TLSReport{STARTTLS: !t.opts.Secure}
	t.checkCertificate(rep, ve.UnverifiedCertificates, ve.Err)
	r.report.TLS = rep
}

// checkCertificate fills in the certificate facts of rep. verifyErr is the
// handshake's verification error, if it failed; when the handshake did not
// verify (InsecureSkipVerify), the chain is checked here against the same
// roots and name, so that the report says whether it would pass.
func (t *Transport) checkCertificate(rep *TLSReport, certs []*x509.Certificate, verifyErr error) {
	cfg := t.tlsConfig
	rep.ServerName = cfg.ServerName
	rep.Enforced = !cfg.InsecureSkipVerify
	if len(certs) == 0 {
		rep.VerifyError = "the relay sent no certificate"
		return
	}
	leaf := certs[0]
	rep.Subject, rep.Issuer = leaf.Subject.String(), leaf.Issuer.String()
	rep.DNSNames = leaf.DNSNames
	for _, ip := range leaf.IPAddresses {
		rep.IPAddresses = append(rep.IPAddresses, ip.String())
	}
	rep.NotBefore, rep.NotAfter = leaf.NotBefore, leaf.NotAfter
	if verifyErr == nil && cfg.InsecureSkipVerify {
		opts := x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: cfg.ServerName, Intermediates: x509.NewCertPool()}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, verifyErr = leaf.Verify(opts)
	}
	rep.Verified = verifyErr == nil
	if verifyErr != nil {
		rep.VerifyError = verifyErr.Error()
	}
}

// noteAuth records the outcome of authenticate (setup calls it).
func noteAuth(ctx context.Context, user, mech string, err error) {
	r := recorderFrom(ctx)
	if r == nil {
		return
	}
	a := &AuthReport{User: user, Mechanism: mech, OK: err == nil, Reply: r.authReply}
	r.report.Auth = a
}
