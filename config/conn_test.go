package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"
)

// keyPairPEM makes a self-signed client certificate and its key, as PEM.
func keyPairPEM(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relayq client"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// TestConnRejected: local_address, dns_timeout, proxy and the client
// certificate keys, each error naming the key and its line, and never
// quoting a proxy password.
func TestConnRejected(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := keyPairPEM(t)
	cert := writeFile(t, dir, "cert.pem", string(certPEM))
	key := writeFile(t, dir, "key.pem", string(keyPEM))
	_, otherKeyPEM := keyPairPEM(t)
	otherKey := writeFile(t, dir, "other.key", string(otherKeyPEM))
	notPEM := writeFile(t, dir, "not.pem", "not a certificate\n")
	tests := []struct{ name, text, want string }{
		{"local_address not an IP", "[relay]\nlocal_address = \"eth0\"\n", "test.toml:2: relay.local_address: \"eth0\" is not an IP address"},
		{"local_address on a socket", "[relay]\nurl = \"lmtp+unix:///run/lmtp\"\nlocal_address = \"127.0.0.1\"\n", "test.toml:3: relay.local_address: does not apply to a unix-socket relay"},
		{"local_address in the url", "[relay]\nurl = \"smtp://h.example?local_address=x\"\n", "test.toml:2: relay.url: \"x\" is not an IP address"},
		{"zero dns_timeout", "[relay]\ndns_timeout = \"0s\"\n", "test.toml:2: relay.dns_timeout: 0s must be longer than 0"},
		{"bad dns_timeout", "[relay]\ndns_timeout = \"30\"\n", "test.toml:2: relay.dns_timeout: \"30\" is not a duration"},

		{"proxy scheme", "[relay]\nproxy = \"https://u:hunter2@p.example:443\"\n", "test.toml:2: relay.proxy: unknown scheme \"https\""},
		{"proxy without port", "[relay]\nproxy = \"socks5://u:hunter2@p.example\"\n", "test.toml:2: relay.proxy: no port, or not a port (1-65535): use socks5://p.example:PORT"},
		{"proxy bad port", "[relay]\nproxy = \"http://p.example:0\"\n", "test.toml:2: relay.proxy: no port"},
		{"proxy without host", "[relay]\nproxy = \"socks5h://:1080\"\n", "test.toml:2: relay.proxy: no host"},
		{"proxy not a url", "[relay]\nproxy = \"127.0.0.1:1080\"\n", "test.toml:2: relay.proxy: "},
		{"proxy with a path", "[relay]\nproxy = \"http://p.example:3128/x\"\n", "test.toml:2: relay.proxy: unexpected path"},
		{"proxy empty user", "[relay]\nproxy = \"socks5://:hunter2@p.example:1080\"\n", "test.toml:2: relay.proxy: the user before the @ is empty"},
		{"proxy on a socket", "[relay]\nurl = \"lmtp+unix:///run/lmtp\"\nproxy = \"socks5://p.example:1080\"\n", "test.toml:3: relay.proxy: does not apply to a unix-socket relay"},
		{"proxy disagrees with url", "[relay]\nurl = \"smtp://h.example?proxy=socks5://u:hunter2@p.example:1080\"\nproxy = \"socks5://u:other@p.example:1080\"\n", "test.toml:3: relay.proxy: disagrees with relay.url; set one or the other"},

		{"min_version", "[relay.tls]\nmin_version = \"1.4\"\n", "test.toml:2: relay.tls.min_version: \"1.4\" is not a TLS version: write \"1.0\", \"1.1\", \"1.2\" or \"1.3\""},
		{"min_version float", "[relay.tls]\nmin_version = 1.4\n", "test.toml:2: relay.tls.min_version: \"1.4\" is not a TLS version"},
		{"min_version integer", "[relay.tls]\nmin_version = 1\n", "test.toml:2: relay.tls.min_version: expected a TLS version like \"1.2\", found integer"},
		{"cert without key", "[relay.tls]\ncert_file = \"" + cert + "\"\n", "test.toml:2: relay.tls.cert_file: is set but relay.tls.key_file is not"},
		{"key without cert", "[relay.tls]\nkey_file = \"" + key + "\"\n", "test.toml:2: relay.tls.key_file: is set but relay.tls.cert_file is not"},
		{"relative cert", "[relay.tls]\ncert_file = \"cert.pem\"\nkey_file = \"" + key + "\"\n", "test.toml:2: relay.tls.cert_file: \"cert.pem\" is not an absolute path"},
		{"missing cert", "[relay.tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"" + key + "\"\n", "test.toml:2: relay.tls.cert_file: open /nonexistent/cert.pem: no such file or directory"},
		{"cert not PEM", "[relay.tls]\ncert_file = \"" + notPEM + "\"\nkey_file = \"" + key + "\"\n", "test.toml:2: relay.tls.cert_file: " + notPEM + " holds no PEM certificate"},
		{"missing key", "[relay.tls]\ncert_file = \"" + cert + "\"\nkey_file = \"/nonexistent/key.pem\"\n", "test.toml:3: relay.tls.key_file: open /nonexistent/key.pem: no such file or directory"},
		{"key of another cert", "[relay.tls]\ncert_file = \"" + cert + "\"\nkey_file = \"" + otherKey + "\"\n", "test.toml:3: relay.tls.key_file: " + otherKey + ": tls: private key does not match public key"},
		{"key is a cert", "[relay.tls]\ncert_file = \"" + cert + "\"\nkey_file = \"" + cert + "\"\n", "test.toml:3: relay.tls.key_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testLoader(t).parse([]byte(tt.text), "test.toml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.text)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("config:\n%s\nerror:\n  %v\nwant it to contain:\n  %s", tt.text, err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the proxy password: %v", err)
			}
		})
	}
}

// TestConnAccepted: the values relayq takes, as the transport will see them,
// from keys and from url query options alike.
func TestConnAccepted(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := keyPairPEM(t)
	cert := writeFile(t, dir, "cert.pem", string(certPEM))
	key := writeFile(t, dir, "key.pem", string(keyPEM))

	def := mustParse(t, testLoader(t), "")
	if r := def.Relay; r.DNSTimeout.Duration != 30*time.Second || r.TLS.MinVersion != tls.VersionTLS12 ||
		r.LocalAddress != "" || r.Proxy != "" || r.TLS.CertFile != "" {
		t.Errorf("defaults: dns_timeout %v, min_version %v, local_address %q, proxy %q, cert_file %q; want 30s, 1.2 and none",
			r.DNSTimeout, r.TLS.MinVersion, r.LocalAddress, r.Proxy, r.TLS.CertFile)
	}

	keys := mustParse(t, testLoader(t), "[relay]\nhost = \"h.example\"\nlocal_address = \"::1\"\ndns_timeout = \"2s\"\n"+
		"proxy = \"socks5h://u:p%40ss@127.0.0.1:1080\"\n[relay.tls]\nmin_version = \"1.3\"\n"+
		"cert_file = \""+cert+"\"\nkey_file = \""+key+"\"\n").Relay
	fromURL := mustParse(t, testLoader(t), "[relay]\nurl = \"smtp://h.example?local_address=::1&dns_timeout=2s"+
		"&proxy=socks5h://u:p%2540ss@127.0.0.1:1080&tls.min_version=1.3\"\n[relay.tls]\n"+
		"cert_file = \""+cert+"\"\nkey_file = \""+key+"\"\n").Relay
	for name, r := range map[string]RelayConfig{"keys": keys, "url": fromURL} {
		if r.LocalAddress != "::1" || r.DNSTimeout.Duration != 2*time.Second ||
			r.Proxy != "socks5h://u:p%40ss@127.0.0.1:1080" || r.TLS.MinVersion != tls.VersionTLS13 {
			t.Errorf("%s: local_address %q, dns_timeout %v, proxy %q, min_version %v", name, r.LocalAddress, r.DNSTimeout, r.Proxy, r.TLS.MinVersion)
		}
	}
	for _, v := range []string{"1.0", "1.1", "1.2", "1.3"} {
		for _, lit := range []string{`"` + v + `"`, v} {
			r := mustParse(t, testLoader(t), "[relay.tls]\nmin_version = "+lit+"\n").Relay
			if r.TLS.MinVersion.String() != v {
				t.Errorf("min_version = %s loads as %v", lit, r.TLS.MinVersion)
			}
		}
	}
	for _, p := range []string{"socks5://127.0.0.1:1080", "socks5h://proxy.example:1080/", "http://u:p@[::1]:3128"} {
		mustParse(t, testLoader(t), "[relay]\nproxy = \""+p+"\"\n")
	}

	// A client never reads the key, which is for the daemon's eyes only.
	client := testLoader(t)
	client.skipSecrets = true
	mustParse(t, client, "[relay.tls]\ncert_file = \"/root/cert.pem\"\nkey_file = \"/root/key.pem\"\n")
}

// TestProxyPasswordNotLogged: the effective config printed at start shows
// the proxy, whether given as a key or in the relay url, without its
// password.
func TestProxyPasswordNotLogged(t *testing.T) {
	for _, text := range []string{
		"[relay]\nproxy = \"socks5://relayq:hunter2@proxy.example:1080\"\n",
		"[relay]\nurl = \"smtp://h.example?proxy=http://relayq:hunter2@proxy.example:3128\"\n",
	} {
		cfg := mustParse(t, testLoader(t), text)
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", cfg)
		out := buf.String()
		if strings.Contains(out, "hunter2") {
			t.Errorf("log shows the proxy password:\n%s", out)
		}
		if !strings.Contains(out, "relayq:xxxxx@proxy.example") {
			t.Errorf("log does not show the proxy (user, host):\n%s", out)
		}
	}
}
