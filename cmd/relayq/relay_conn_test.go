package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/config"
	"relayq/transport"
	"relayq/transport/smtptest"
)

// relayFromConfig loads [relay] TOML (the url is prepended) the way serve
// does and returns the Transport transportOptions makes of it.
func relayFromConfig(t *testing.T, url, text string) (*transport.Transport, transport.Options) {
	t.Helper()
	cfg, err := config.Parse([]byte("state_dir = \""+t.TempDir()+"\"\n[relay]\nurl = \""+url+"\"\nconnection_timeout = \"3s\"\n"+text), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := transportOptions(cfg.Relay, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("transportOptions: %v", err)
	}
	tr := transport.New(o)
	t.Cleanup(func() { tr.Close() })
	return tr, o
}

func sendOne(tr *transport.Transport) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body := []byte("Subject: t\r\n\r\nhello\r\n")
	res, err := tr.Send(ctx, &transport.Message{From: "s@example.org", Recipients: []string{"r@example.net"}, Body: bytes.NewReader(body), Size: int64(len(body))})
	if err == nil {
		err = res.Recipients[0].Err
	}
	return err
}

func writePEM(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRelayTLSKeys: [relay.tls] keys, from the file to a relay session:
// ca_file trusts a private CA (and without it the certificate is refused),
// reject_unauthorized = false accepts any, cert_file/key_file are
// presented to a relay that requires them, min_version = "1.3" refuses a
// relay capped at 1.2, and servername is verified for an IP host.
func TestRelayTLSKeys(t *testing.T) {
	ca := smtptest.NewCA(t)
	caFile := writePEM(t, "ca.pem", ca.CertPEM)
	client := ca.IssueClient(t, "relayq client")
	certFile, keyFile := writePEM(t, "client.pem", client.CertPEM), writePEM(t, "client.key", client.KeyPEM)
	requireClient := func(c *tls.Config) { c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool }
	cap12 := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }
	tests := []struct {
		name    string
		relay   smtptest.Options
		keys    string // under [relay.tls]
		wantErr string
	}{
		{"private CA, default roots", smtptest.Options{}, "", "not signed by a trusted authority"},
		{"private CA, ca_file", smtptest.Options{}, "ca_file = \"" + caFile + "\"\n", ""},
		{"private CA, reject_unauthorized = false", smtptest.Options{}, "reject_unauthorized = false\n", ""},
		{"client certificate required, given", smtptest.Options{ConfigureTLS: requireClient},
			"ca_file = \"" + caFile + "\"\ncert_file = \"" + certFile + "\"\nkey_file = \"" + keyFile + "\"\n", ""},
		{"client certificate required, none", smtptest.Options{ConfigureTLS: requireClient}, "ca_file = \"" + caFile + "\"\n", "certificate"},
		{"relay capped at 1.2, min_version 1.2", smtptest.Options{ConfigureTLS: cap12}, "ca_file = \"" + caFile + "\"\n", ""},
		{"relay capped at 1.2, min_version 1.3", smtptest.Options{ConfigureTLS: cap12}, "ca_file = \"" + caFile + "\"\nmin_version = \"1.3\"\n", "protocol version"},
		{"IP host, servername", smtptest.Options{Certificate: ca.Issue(t, "relay.example")}, "ca_file = \"" + caFile + "\"\nservername = \"relay.example\"\n", ""},
		{"IP host, no servername", smtptest.Options{Certificate: ca.Issue(t, "relay.example")}, "ca_file = \"" + caFile + "\"\n", "validate certificate for 127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.relay
			opts.TLS = true
			if opts.Certificate == nil {
				opts.Certificate = ca.Issue(t, "127.0.0.1")
			}
			srv := smtptest.NewServer(t, opts)
			tr, _ := relayFromConfig(t, "smtp://"+srv.Addr(), "[relay.tls]\nrequire_tls = true\n"+tc.keys)
			err := sendOne(tr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if got := srv.WaitMessages(t, 1, time.Second)[0]; !got.TLS {
					t.Errorf("delivered without TLS")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Send: %v, want an error containing %q", err, tc.wantErr)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("relay accepted %d messages", n)
			}
		})
	}
}

// TestRelayConnKeys: local_address, dns_timeout and proxy reach the
// transport as they were written.
func TestRelayConnKeys(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr, o := relayFromConfig(t, "smtp://"+srv.Addr(), "local_address = \"127.0.0.2\"\ndns_timeout = \"5s\"\n")
	if o.DNSTimeout != 5*time.Second || o.LocalAddress != "127.0.0.2" || o.Proxy != nil {
		t.Errorf("options: dns timeout %v, local address %q, proxy %v", o.DNSTimeout, o.LocalAddress, o.Proxy)
	}
	if err := sendOne(tr); err != nil {
		t.Fatal(err)
	}
	if r := srv.Remotes()[0]; !strings.HasPrefix(r, "127.0.0.2:") {
		t.Errorf("relay saw the connection from %s, want 127.0.0.2", r)
	}

	_, o = relayFromConfig(t, "smtp://relay.example", "proxy = \"socks5h://u:p%40ss@127.0.0.1:1080\"\n")
	if p := o.Proxy; p == nil || p.Scheme != "socks5h" || p.Host != "127.0.0.1:1080" || p.User.Username() != "u" {
		t.Fatalf("proxy = %v", o.Proxy)
	}
	if pass, _ := o.Proxy.User.Password(); pass != "p@ss" {
		t.Errorf("proxy password %q, want it percent-decoded", pass)
	}
}
