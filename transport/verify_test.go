package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"relayq/transport/smtptest"
)

func verify(t *testing.T, tr *Transport, env *Envelope) (*Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := tr.Verify(ctx, env)
	if rep == nil {
		t.Fatalf("Verify returned a nil Report (err %v)", err)
	}
	return rep, err
}

// TestVerifyReport checks the facts Verify reports against relays with
// STARTTLS and implicit TLS, with each AUTH mechanism.
func TestVerifyReport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		implicit bool
		method   string // Auth.Mechanism; "" lets transport choose
		wantMech string
	}{
		{"STARTTLS, best mechanism", false, "", "PLAIN"},
		{"STARTTLS, LOGIN", false, "LOGIN", "LOGIN"},
		{"implicit TLS, PLAIN", true, "plain", "PLAIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{
				TLS: !tc.implicit, ImplicitTLS: tc.implicit, MaxSize: 10240, Auth: map[string]string{"u": "p"},
			})
			tr := newTransport(t, srv, credentials("u", "p"), func(o *Options) {
				o.Secure, o.Auth.Mechanism = tc.implicit, tc.method
			})
			rep, err := verify(t, tr, nil)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.Address != srv.Addr() || rep.Connected != srv.Addr() {
				t.Errorf("address %q connected %q, want %q", rep.Address, rep.Connected, srv.Addr())
			}
			if rep.Greeting != "220 smtptest.localhost ESMTP smtptest" {
				t.Errorf("greeting %q", rep.Greeting)
			}
			// After TLS: no STARTTLS any more.
			if !slices.Contains(rep.Extensions, "SIZE 10240") || !slices.Contains(rep.Extensions, "AUTH PLAIN LOGIN") ||
				slices.Contains(rep.Extensions, "STARTTLS") {
				t.Errorf("extensions %q, want those after TLS", rep.Extensions)
			}
			tl := rep.TLS
			if tl == nil {
				t.Fatal("no TLS report")
			}
			if tl.Version != "TLS 1.3" || tl.CipherSuite == "" || tl.STARTTLS == tc.implicit {
				t.Errorf("TLS %+v", tl)
			}
			if !tl.Enforced || !tl.Verified || tl.VerifyError != "" || tl.ServerName != "127.0.0.1" ||
				tl.Subject != "CN=smtptest 127.0.0.1" || tl.Issuer != tl.Subject {
				t.Errorf("certificate facts %+v", tl)
			}
			if until := time.Until(tl.NotAfter); until < 50*time.Minute || until > time.Hour {
				t.Errorf("certificate expiry %v, want in about an hour", tl.NotAfter)
			}
			want := AuthReport{User: "u", Mechanism: tc.wantMech, OK: true, Reply: "235 2.7.0 Authentication successful"}
			if rep.Auth == nil || *rep.Auth != want {
				t.Errorf("auth %+v, want %+v", rep.Auth, want)
			}
			if cmds := srv.Commands(); cmds[len(cmds)-1] != "QUIT" || srv.DataAttempts() != 0 {
				t.Errorf("relay saw %q: want QUIT last, no DATA", cmds)
			}
		})
	}
}

// TestVerifyClearAndUnverified: a relay without TLS is reported so (nil
// TLS, no AUTH); a relay whose certificate is not trusted but accepted
// (InsecureSkipVerify) is reported as not verified, with the reason.
func TestVerifyClearAndUnverified(t *testing.T) {
	clear := smtptest.NewServer(t, smtptest.Options{})
	rep, err := verify(t, newTransport(t, clear), nil)
	if err != nil || rep.TLS != nil || rep.Auth != nil || len(rep.Extensions) == 0 {
		t.Errorf("clear relay: err %v, report %+v", err, rep)
	}

	srv := smtptest.NewServer(t, smtptest.Options{ImplicitTLS: true})
	tr := newTransport(t, srv, secure, func(o *Options) { o.TLS = &tls.Config{InsecureSkipVerify: true} })
	rep, err = verify(t, tr, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if tl := rep.TLS; tl == nil || tl.Enforced || tl.Verified || !strings.Contains(tl.VerifyError, "unknown authority") {
		t.Errorf("TLS report %+v, want not enforced, not verified, unknown authority", rep.TLS)
	}
}

// TestVerifyFailures: what the report and the error say when the session
// fails: a refused certificate (with the certificate's facts), a refused
// password (with the relay's reply), an unreachable relay.
func TestVerifyFailures(t *testing.T) {
	t.Run("certificate", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
		rep, err := verify(t, newTransport(t, srv, func(o *Options) { o.TLS = nil }), nil)
		wantError(t, err, StageTLS, true)
		if tl := rep.TLS; tl == nil || tl.Verified || !tl.Enforced || tl.Subject != "CN=smtptest 127.0.0.1" || tl.VerifyError == "" {
			t.Errorf("TLS report %+v", rep.TLS)
		}
		if rep.Greeting == "" || rep.Connected != srv.Addr() {
			t.Errorf("report %+v, want the greeting and address before STARTTLS", rep)
		}
	})
	t.Run("password", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{"u": "p"}})
		rep, err := verify(t, newTransport(t, srv, credentials("u", "bad")), nil)
		wantError(t, err, StageAuth, true)
		want := AuthReport{User: "u", Mechanism: "PLAIN", Reply: "535 5.7.8 Authentication credentials invalid"}
		if rep.Auth == nil || *rep.Auth != want {
			t.Errorf("auth %+v, want %+v", rep.Auth, want)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{})
		addr := srv.Addr()
		srv.Close()
		tr := newTransport(t, srv, func(o *Options) { o.Address = addr })
		rep, err := verify(t, tr, nil)
		wantError(t, err, StageDial, true)
		if !strings.Contains(err.Error(), "connection refused") || rep.Connected != "" || rep.Address != addr {
			t.Errorf("err %v, report %+v", err, rep)
		}
	})
}

// TestVerifyEnvelope: with an Envelope, MAIL FROM and every RCPT TO are
// tried and reported, then RSET; no DATA. A refused recipient makes the
// error (the first refusal, permanent) while the others are still asked.
func TestVerifyEnvelope(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{
			"no@example.net":    {smtptest.Reply(550, "5.7.1 Relaying denied")},
			"later@example.net": {smtptest.Reply(450, "4.2.1 Try later")},
		},
	}})
	tr := newTransport(t, srv)
	rep, err := verify(t, tr, &Envelope{From: "me@example.org", To: []string{"yes@example.net", "no@example.net", "later@example.net", "bad address"}})
	var se *smtp.SMTPError
	if wantError(t, err, StageRcpt, false); !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("error %v, want the first refusal, 550 5.7.1", err)
	}
	if rep.Mail == nil || *rep.Mail != (EnvelopeReply{Address: "me@example.org", OK: true, Reply: "250 2.1.0 Ok"}) {
		t.Errorf("mail %+v", rep.Mail)
	}
	want := []EnvelopeReply{
		{"yes@example.net", true, "250 2.1.5 Ok"},
		{"no@example.net", false, "550 5.7.1 Relaying denied"},
		{"later@example.net", false, "450 4.2.1 Try later"},
		{"bad address", false, `553 5.1.3 invalid recipient address: address "bad address" contains " "`},
	}
	if !slices.Equal(rep.Rcpt, want) {
		t.Errorf("rcpt\n got %+v\nwant %+v", rep.Rcpt, want)
	}
	cmds := srv.Commands()
	if srv.DataAttempts() != 0 || !slices.Contains(cmds, "RSET") || cmds[len(cmds)-1] != "QUIT" {
		t.Errorf("relay saw %q, want RSET and QUIT, no DATA", cmds)
	}

	srv.SetScript(smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(550, "5.7.1 Sender not allowed")}})
	rep, err = verify(t, tr, &Envelope{From: "me@example.org", To: []string{"yes@example.net"}})
	wantError(t, err, StageMail, false)
	if rep.Mail == nil || rep.Mail.OK || rep.Mail.Reply != "550 5.7.1 Sender not allowed" || len(rep.Rcpt) != 0 {
		t.Errorf("mail %+v rcpt %+v", rep.Mail, rep.Rcpt)
	}
}

// TestVerifyThroughProxy: through a SOCKS5 proxy, the report names the
// proxy without its password and the address connected to is the proxy's.
func TestVerifyThroughProxy(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	p := newTestProxy(t, "socks5", "relayq", "s3cret", nil)
	tr := newTransport(t, srv, func(o *Options) { o.Proxy = p.url("socks5", url.UserPassword("relayq", "s3cret")) })
	rep, err := verify(t, tr, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if want := "socks5://" + p.ln.Addr().String(); rep.Proxy != want || rep.Connected != p.ln.Addr().String() || rep.Greeting == "" {
		t.Errorf("proxy %q connected %q greeting %q, want proxy %q", rep.Proxy, rep.Connected, rep.Greeting, want)
	}
	if !slices.Contains(p.asked(), srv.Addr()) {
		t.Errorf("the proxy was asked for %q, want %s", p.asked(), srv.Addr())
	}
	p.noErrors(t)
}
