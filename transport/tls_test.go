package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// noLookup is a LookupHost that fails the test: the relay's host is an IP
// address and must not be resolved.
func noLookup(t *testing.T) func(context.Context, string) ([]string, error) {
	return func(_ context.Context, host string) ([]string, error) {
		t.Errorf("resolved %q although the relay's host is an IP address", host)
		return nil, errors.New("no lookups in this test")
	}
}

// TestSelfSignedRelay: a relay with a self-signed certificate is refused
// when verification uses the system's roots, with an error saying why;
// accepted when verification is off or when its certificate is trusted
// as a CA, and through a CA that signed it.
func TestSelfSignedRelay(t *testing.T) {
	ca := smtptest.NewCA(t)
	selfSigned := smtptest.NewCertificate(t)
	caSigned := ca.Issue(t, "127.0.0.1")
	tests := []struct {
		name    string
		cert    *smtptest.Certificate
		tls     *tls.Config
		wantErr string
	}{
		{"self-signed, system roots", selfSigned, &tls.Config{}, "not signed by a trusted authority"},
		{"self-signed, verification off", selfSigned, &tls.Config{InsecureSkipVerify: true}, ""},
		{"self-signed, trusted", selfSigned, &tls.Config{RootCAs: selfSigned.Pool}, ""},
		{"CA-signed, system roots", caSigned, &tls.Config{}, "not signed by a trusted authority"},
		{"CA-signed, CA trusted", caSigned, &tls.Config{RootCAs: ca.Pool}, ""},
		{"CA-signed, another CA trusted", caSigned, &tls.Config{RootCAs: selfSigned.Pool}, "not signed by a trusted authority"},
	}
	for _, tc := range tests {
		for _, implicit := range []bool{false, true} {
			name := tc.name + ", STARTTLS"
			if implicit {
				name = tc.name + ", implicit TLS"
			}
			t.Run(name, func(t *testing.T) {
				srv := smtptest.NewServer(t, smtptest.Options{TLS: !implicit, ImplicitTLS: implicit, Certificate: tc.cert})
				tr := newTransport(t, srv, func(o *Options) { o.TLS, o.Secure = tc.tls, implicit })
				_, err := send(t, tr, message("s@example.org", "r@example.net"))
				if tc.wantErr == "" {
					if err != nil {
						t.Fatalf("Send: %v", err)
					}
					if !srv.WaitMessages(t, 1, 0)[0].TLS {
						t.Errorf("delivered without TLS")
					}
					return
				}
				wantError(t, err, StageTLS, true)
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want it to say %q", err, tc.wantErr)
				}
				if slices.ContainsFunc(srv.Commands(), func(c string) bool { return strings.HasPrefix(c, "MAIL") }) {
					t.Errorf("MAIL sent to a relay whose certificate was refused")
				}
			})
		}
	}
}

// TestClientCertificate: a relay that requires a client certificate gets
// the configured one, and refuses a client without.
func TestClientCertificate(t *testing.T) {
	ca := smtptest.NewCA(t)
	client := ca.IssueClient(t, "relayq client")
	srv := smtptest.NewServer(t, smtptest.Options{
		TLS:         true,
		Certificate: ca.Issue(t, "127.0.0.1"),
		ConfigureTLS: func(c *tls.Config) {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool
		},
	})
	t.Run("presented", func(t *testing.T) {
		tr := newTransport(t, srv, func(o *Options) {
			o.TLS = &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}}
		})
		mustSend(t, tr, message("s@example.org", "r@example.net"))
		if got := srv.WaitMessages(t, 1, 0)[0]; !got.TLS || got.ClientCert != "relayq client" {
			t.Errorf("relay saw TLS %v, client certificate %q; want TLS with \"relayq client\"", got.TLS, got.ClientCert)
		}
	})
	t.Run("none", func(t *testing.T) {
		n := len(srv.Messages())
		tr := newTransport(t, srv, func(o *Options) { o.TLS = &tls.Config{RootCAs: ca.Pool} })
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		// In TLS 1.3 the client's handshake ends before the server checks
		// the certificate: the refusal arrives with the first read (EHLO).
		var te *Error
		if !errors.As(err, &te) || (te.Stage != StageTLS && te.Stage != StageHello) || !te.Temporary() {
			t.Fatalf("err = %v, want a temporary failure at TLS or EHLO", err)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("err = %v, want it to mention the certificate", err)
		}
		if len(srv.Messages()) != n {
			t.Errorf("relay accepted a message from a client without a certificate")
		}
	})
}

// TestMinVersion: a relay capped at TLS 1.2 is refused when TLS 1.3 is
// the minimum, and used when 1.2 is.
func TestMinVersion(t *testing.T) {
	for _, tc := range []struct {
		min     uint16
		wantErr bool
	}{{tls.VersionTLS12, false}, {tls.VersionTLS13, true}} {
		t.Run(tls.VersionName(tc.min), func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{TLS: true, ConfigureTLS: func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }})
			tr := newTransport(t, srv, func(o *Options) { o.TLS.MinVersion = tc.min })
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			wantError(t, err, StageTLS, true)
			if !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("err = %v, want a protocol version failure", err)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("relay got %d messages over a refused TLS version", n)
			}
		})
	}
}

// TestRelayTLSBroken: a relay that offers STARTTLS and ends every
// handshake with its alert internal_error (Debian 12's OpenSMTPD under
// OpenSSL 3). With TLS opportunistic, the message goes in clear on a
// second connection, whose transcript says why; with RequireTLS it is
// refused and nothing goes in clear. A relay that refuses the client's
// TLS version (a handshake failure of another kind) is no reason to
// send in clear: TestMinVersion.
func TestRelayTLSBroken(t *testing.T) {
	broken := func(c *tls.Config) {
		c.Certificates = nil
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("the key process failed")
		}
	}
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, ConfigureTLS: broken})
	res := mustSend(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
	got := srv.WaitMessages(t, 1, time.Second)
	if got[0].TLS || srv.Connections() != 2 {
		t.Errorf("TLS %v on %d connections; want the message in clear on a second connection", got[0].TLS, srv.Connections())
	}
	if !strings.Contains(res.Transcript, "TLS handshake failed on the connection before") {
		t.Errorf("transcript does not say why the session is in clear:\n%s", res.Transcript)
	}

	srv = smtptest.NewServer(t, smtptest.Options{TLS: true, ConfigureTLS: broken})
	_, err := send(t, newTransport(t, srv, func(o *Options) { o.RequireTLS = true }), message("s@example.org", "r@example.net"))
	wantError(t, err, StageTLS, true)
	if !strings.Contains(err.Error(), "remote error: tls: internal error") {
		t.Errorf("err = %v, want the relay's alert", err)
	}
	if srv.Connections() != 1 || slices.ContainsFunc(srv.Commands(), func(c string) bool { return strings.HasPrefix(c, "MAIL") }) {
		t.Errorf("with RequireTLS: %d connections, commands %q; want one connection and no MAIL", srv.Connections(), srv.Commands())
	}
}

// TestRelayRefusesOfferedSTARTTLS: a relay that offers STARTTLS and
// answers it with 454 (Postfix with a broken key: "TLS not available due
// to local problem"). With TLS opportunistic the session goes on in clear
// and the message is delivered on it; with RequireTLS it is refused with
// the relay's reply and nothing goes in clear.
func TestRelayRefusesOfferedSTARTTLS(t *testing.T) {
	refuse := smtptest.Script{StartTLS: []smtptest.Step{smtptest.Reply(454, "4.7.0 TLS not available due to local problem")}}
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Script: refuse})
	res := mustSend(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
	if got := srv.WaitMessages(t, 1, time.Second); got[0].TLS || srv.Connections() != 1 {
		t.Errorf("TLS %v on %d connections; want the message in clear on the same one", got[0].TLS, srv.Connections())
	}
	if !strings.Contains(res.Transcript, "the relay refused STARTTLS") {
		t.Errorf("transcript does not say why the session is in clear:\n%s", res.Transcript)
	}

	srv = smtptest.NewServer(t, smtptest.Options{TLS: true, Script: refuse})
	_, err := send(t, newTransport(t, srv, requireTLS), message("s@example.org", "r@example.net"))
	wantError(t, err, StageTLS, true)
	if !strings.Contains(err.Error(), "454") {
		t.Errorf("err = %v, want the relay's 454", err)
	}
	if got, want := srv.Commands(), []string{"EHLO " + localName, "STARTTLS"}; !slices.Equal(got, want) {
		t.Errorf("with RequireTLS the relay saw %q, want only %q", got, want)
	}
}

// TestIPHostWithServerName: a relay given by IP address is connected to
// without any lookup, and its certificate, valid only for its name, is
// verified against ServerName; without ServerName it is refused.
func TestIPHostWithServerName(t *testing.T) {
	ca := smtptest.NewCA(t)
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Certificate: ca.Issue(t, "relay.example")})
	for _, tc := range []struct {
		serverName string
		wantErr    bool
	}{{"relay.example", false}, {"", true}, {"other.example", true}} {
		t.Run("servername="+tc.serverName, func(t *testing.T) {
			tr := newTransport(t, srv, func(o *Options) {
				o.TLS = &tls.Config{RootCAs: ca.Pool, ServerName: tc.serverName}
				o.LookupHost = noLookup(t)
			})
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			wantError(t, err, StageTLS, true)
			var he x509.HostnameError
			if !errors.As(err, &he) {
				t.Errorf("err = %v, want a host name mismatch", err)
			}
		})
	}
}

// TestRequireTLSStripped: with RequireTLS, STARTTLS is sent even when the
// relay does not offer it. A relay that accepts it gets the message over
// TLS; one that refuses it (the offer and the command stripped on the way)
// gets nothing after EHLO and STARTTLS. Without RequireTLS, a relay that
// does not offer STARTTLS is used in clear, as before.
func TestRequireTLSStripped(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Without: []string{"STARTTLS"}})
		tr := newTransport(t, srv, requireTLS)
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		te := wantError(t, err, StageTLS, true)
		if !errors.Is(te, ErrTLSUnavailable) || !strings.Contains(err.Error(), "502") {
			t.Errorf("err = %v, want ErrTLSUnavailable with the relay's 502", err)
		}
		if got, want := srv.Commands(), []string{"EHLO " + localName, "STARTTLS"}; !slices.Equal(got, want) {
			t.Errorf("relay saw %q, want only %q", got, want)
		}
	})
	t.Run("accepted though not offered", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true, HideSTARTTLS: true})
		mustSend(t, newTransport(t, srv, requireTLS), message("s@example.org", "r@example.net"))
		if !srv.WaitMessages(t, 1, 0)[0].TLS {
			t.Errorf("delivered without TLS")
		}
	})
	t.Run("not offered, not required", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true, HideSTARTTLS: true})
		mustSend(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
		if srv.WaitMessages(t, 1, 0)[0].TLS || slices.Contains(srv.Commands(), "STARTTLS") {
			t.Errorf("STARTTLS tried although the relay does not offer it and TLS is not required")
		}
	})
}
