package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

func TestSendPlain(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv)
	res := mustSend(t, tr, message("sender@example.org", "a@example.net", "b@example.net"))

	got := srv.WaitMessages(t, 1, 0)[0]
	if got.From != "sender@example.org" || !slices.Equal(got.To, []string{"a@example.net", "b@example.net"}) {
		t.Errorf("envelope = %q → %q", got.From, got.To)
	}
	if !bytes.Equal(got.Body, testBody) {
		t.Errorf("body = %q\nwant %q", got.Body, testBody)
	}
	if got.TLS || got.Hello != localName {
		t.Errorf("TLS = %v, hello = %q; want clear text, %q", got.TLS, got.Hello, localName)
	}
	if !slices.Contains(got.MailParams, "SIZE="+itoa(len(testBody))) {
		t.Errorf("MAIL parameters %q lack SIZE=%d", got.MailParams, len(testBody))
	}
	for _, r := range res.Recipients {
		if want := "2.0.0 Ok: queued as " + got.ID; r.Reply != want {
			t.Errorf("%s: reply %q, want %q", r.Address, r.Reply, want)
		}
	}
	for _, h := range srv.Hellos() {
		if h != localName {
			t.Errorf("EHLO names %q, want only %q", srv.Hellos(), localName)
		}
	}
}

func TestSTARTTLS(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
	tr := newTransport(t, srv)
	mustSend(t, tr, message("s@example.org", "r@example.net"))

	if got := srv.WaitMessages(t, 1, 0)[0]; !got.TLS {
		t.Errorf("message went in clear although the relay offers STARTTLS")
	}
	// The EHLO name is LocalName before and after STARTTLS (go-smtp's own
	// STARTTLS would say "localhost" first).
	if h := srv.Hellos(); !slices.Equal(h, []string{localName, localName}) {
		t.Errorf("EHLO names = %q, want %q twice", h, localName)
	}
	if bytes.Contains(srv.Wire(), []byte("MAIL FROM")) {
		t.Errorf("MAIL FROM went over the wire in clear")
	}
}

func TestTLSVerification(t *testing.T) {
	tests := []struct {
		name    string
		srv     smtptest.Options
		edit    func(*Options)
		wantErr bool
	}{
		{"STARTTLS, trusted", smtptest.Options{TLS: true}, func(*Options) {}, false},
		{"STARTTLS, wrong server name", smtptest.Options{TLS: true}, func(o *Options) { o.TLS.ServerName = "wrong.example" }, true},
		{"STARTTLS, untrusted", smtptest.Options{TLS: true}, func(o *Options) { o.TLS.RootCAs = nil }, true},
		{"STARTTLS, untrusted, skip verify", smtptest.Options{TLS: true}, func(o *Options) { o.TLS.RootCAs, o.TLS.InsecureSkipVerify = nil, true }, false},
		{"implicit TLS, trusted", smtptest.Options{ImplicitTLS: true}, secure, false},
		{"implicit TLS, wrong server name", smtptest.Options{ImplicitTLS: true}, func(o *Options) { o.Secure, o.TLS.ServerName = true, "wrong.example" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.srv)
			tr := newTransport(t, srv, tc.edit)
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if !srv.WaitMessages(t, 1, 0)[0].TLS {
					t.Errorf("delivered without TLS")
				}
				return
			}
			wantError(t, err, StageTLS, true)
			if n := len(srv.Messages()); n != 0 || srv.DataAttempts() != 0 {
				t.Errorf("relay got %d messages, %d DATA, want none", n, srv.DataAttempts())
			}
		})
	}
}

func TestRequireTLS(t *testing.T) {
	t.Run("relay without STARTTLS", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{})
		tr := newTransport(t, srv, requireTLS)
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		te := wantError(t, err, StageTLS, true)
		if !errors.Is(te, ErrTLSUnavailable) {
			t.Errorf("err = %v, want ErrTLSUnavailable", err)
		}
		for _, cmd := range srv.Commands() {
			if !strings.HasPrefix(cmd, "EHLO ") && cmd != "STARTTLS" {
				t.Errorf("sent %q in clear; only EHLO and STARTTLS may come before TLS", cmd)
			}
		}
	})
	t.Run("relay with STARTTLS", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
		mustSend(t, newTransport(t, srv, requireTLS), message("s@example.org", "r@example.net"))
		if !srv.WaitMessages(t, 1, 0)[0].TLS {
			t.Errorf("delivered without TLS")
		}
	})
	t.Run("contradicted by IgnoreTLS", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
		tr := newTransport(t, srv, requireTLS, func(o *Options) { o.IgnoreTLS = true })
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		wantError(t, err, StageTLS, true)
	})
}

func TestIgnoreTLS(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
	mustSend(t, newTransport(t, srv, func(o *Options) { o.IgnoreTLS = true }), message("s@example.org", "r@example.net"))
	if srv.WaitMessages(t, 1, 0)[0].TLS || slices.Contains(srv.Commands(), "STARTTLS") {
		t.Errorf("STARTTLS used although IgnoreTLS is set")
	}
}

func TestAuth(t *testing.T) {
	users := map[string]string{"alice": "s3cret pass"}
	tests := []struct {
		name     string
		srv      smtptest.Options
		edit     func(*Options)
		wantUser string
		wantCode int // at StageAuth; 0 = success
	}{
		{"PLAIN over STARTTLS", smtptest.Options{TLS: true, Auth: users}, credentials("alice", "s3cret pass"), "alice", 0},
		{"PLAIN over implicit TLS", smtptest.Options{ImplicitTLS: true, Auth: users}, func(o *Options) { o.Secure, o.Auth.Username, o.Auth.Password = true, "alice", "s3cret pass" }, "alice", 0},
		{"LOGIN only, two-step", smtptest.Options{TLS: true, Auth: users, AuthMechanisms: []string{"LOGIN"}}, credentials("alice", "s3cret pass"), "alice", 0},
		{"wrong password", smtptest.Options{TLS: true, Auth: users}, credentials("alice", "nope"), "", 535},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.srv)
			tr := newTransport(t, srv, tc.edit)
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			if tc.wantCode != 0 {
				te := wantError(t, err, StageAuth, true)
				var se *smtp.SMTPError
				if !errors.As(te, &se) || se.Code != tc.wantCode {
					t.Fatalf("err = %v, want the relay's %d", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := srv.WaitMessages(t, 1, 0)[0]; got.AuthUser != tc.wantUser {
				t.Errorf("authenticated as %q, want %q", got.AuthUser, tc.wantUser)
			}
		})
	}
}

func TestAuthNeverInClear(t *testing.T) {
	const pass = "hunter2-very-secret"
	users := map[string]string{"alice": pass}
	t.Run("refused", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{Auth: users}) // offers AUTH in clear
		tr := newTransport(t, srv, credentials("alice", pass))
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		te := wantError(t, err, StageAuth, true)
		if !errors.Is(te, ErrInsecureAuth) {
			t.Errorf("err = %v, want ErrInsecureAuth", err)
		}
		if strings.Contains(err.Error(), pass) {
			t.Errorf("error text %q contains the password", err)
		}
		wire := string(srv.Wire())
		for _, secret := range []string{pass, b64("\x00alice\x00" + pass), b64(pass), "AUTH"} {
			if strings.Contains(wire, secret) {
				t.Errorf("the relay received %q in clear:\n%s", secret, wire)
			}
		}
	})
	t.Run("allowed by configuration", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{Auth: users})
		tr := newTransport(t, srv, credentials("alice", pass), func(o *Options) { o.AllowInsecureAuth = true })
		mustSend(t, tr, message("s@example.org", "r@example.net"))
		if got := srv.WaitMessages(t, 1, 0)[0]; got.AuthUser != "alice" {
			t.Errorf("authenticated as %q, want alice", got.AuthUser)
		}
	})
	t.Run("relay without AUTH", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
		tr := newTransport(t, srv, credentials("alice", pass))
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		if te := wantError(t, err, StageAuth, true); !errors.Is(te, ErrAuthUnavailable) {
			t.Errorf("err = %v, want ErrAuthUnavailable", err)
		}
	})
}

// TestHELOOnlyRelay: a relay that refuses EHLO gets HELO, in clear, unless
// TLS is required: then STARTTLS is tried all the same, and the session
// fails if the relay refuses it. EHLO is tried once per session (and once
// more after STARTTLS), HELO once.
func TestHELOOnlyRelay(t *testing.T) {
	refuse := smtptest.Reply(502, "5.5.1 EHLO not implemented")
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Script: smtptest.Script{Hello: []smtptest.Step{refuse}}})
	mustSend(t, newTransport(t, srv), message("s@example.org", "r@example.net"))
	if want := []string{"EHLO " + localName, "HELO " + localName}; !slices.Equal(srv.Commands()[:2], want) {
		t.Errorf("commands %q, want %q first: one EHLO, then the HELO fallback", srv.Commands(), want)
	}
	// Before and after STARTTLS: EHLO refused, HELO taken, twice.
	srv.SetScript(smtptest.Script{Hello: []smtptest.Step{refuse, {}, refuse}})
	mustSend(t, newTransport(t, srv, requireTLS), message("s@example.org", "r@example.net"))
	if got := srv.WaitMessages(t, 2, 0); !got[1].TLS {
		t.Errorf("TLS required, relay accepts STARTTLS: delivered without TLS")
	}
	noTLS := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Hello: []smtptest.Step{refuse}}})
	_, err := send(t, newTransport(t, noTLS, requireTLS), message("s@example.org", "r@example.net"))
	wantError(t, err, StageTLS, true)
}

func TestLogging(t *testing.T) {
	const pass = "correct horse battery staple"
	var logs bytes.Buffer
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{"alice": pass}})
	tr := newTransport(t, srv, credentials("alice", pass), func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	tr.Close()
	out := logs.String()
	for _, want := range []string{"relay TLS established", "relay AUTH succeeded", "relay session ready", "relay connection closed"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, pass) || strings.Contains(out, b64("\x00alice\x00"+pass)) {
		t.Errorf("the password reached the log:\n%s", out)
	}
}
