package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

// TLSVersion is a TLS protocol version written as "1.0", "1.1", "1.2" or
// "1.3"; its value is crypto/tls's (tls.VersionTLS12…).
type TLSVersion uint16

// TLSVersion12 is the default relay.tls.min_version.
const TLSVersion12 = TLSVersion(tls.VersionTLS12)

var tlsVersions = []struct {
	name string
	v    TLSVersion
}{
	{"1.0", tls.VersionTLS10}, {"1.1", tls.VersionTLS11}, {"1.2", tls.VersionTLS12}, {"1.3", tls.VersionTLS13},
}

// UnmarshalText parses "1.0" to "1.3".
func (v *TLSVersion) UnmarshalText(text []byte) error {
	for _, tv := range tlsVersions {
		if string(text) == tv.name {
			*v = tv.v
			return nil
		}
	}
	return fmt.Errorf("%q is not a TLS version: write \"1.0\", \"1.1\", \"1.2\" or \"1.3\"", text)
}

// UnmarshalTOML takes the version as a string, or as a TOML float (1.2),
// which is how it is easily written.
func (v *TLSVersion) UnmarshalTOML(value any) error {
	switch value := value.(type) {
	case string:
		return v.UnmarshalText([]byte(value))
	case float64:
		return v.UnmarshalText([]byte(strconv.FormatFloat(value, 'f', 1, 64)))
	}
	return fmt.Errorf("expected a TLS version like \"1.2\", found %s", tomlTypeName(value))
}

// MarshalText writes the version as UnmarshalText reads it.
func (v TLSVersion) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

func (v TLSVersion) String() string {
	for _, tv := range tlsVersions {
		if v == tv.v {
			return tv.name
		}
	}
	return fmt.Sprintf("0x%04x", uint16(v))
}

// conn checks how relayq reaches the relay: local_address, dns_timeout,
// proxy, and the client certificate of [relay.tls].
func (x *relayResolver) conn() {
	r, c := x.r, x.c
	if r.LocalAddress != "" {
		if net.ParseIP(r.LocalAddress) == nil {
			c.add(x.key("local_address"), "%q is not an IP address", r.LocalAddress)
		} else if r.Socket != "" {
			c.add(x.key("local_address"), "does not apply to a unix-socket relay")
		}
	}
	positive(c, x.key("dns_timeout"), r.DNSTimeout)
	if r.Proxy != "" {
		if err := CheckProxyURL(r.Proxy); err != nil {
			c.add(x.key("proxy"), "%v", err)
		} else if r.Socket != "" {
			c.add(x.key("proxy"), "does not apply to a unix-socket relay")
		}
	}
	x.clientCert()
}

// CheckProxyURL checks a relay.proxy url: socks5://, socks5h:// or http://,
// an optional user:pass@, a host and a port. Its errors never quote the url,
// which may hold a password.
func CheckProxyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid url (want socks5://, socks5h:// or http://[user:pass@]host:port)")
	}
	switch u.Scheme {
	case "socks5", "socks5h", "http":
	default:
		return fmt.Errorf("unknown scheme %q: use socks5:// (relayq resolves the relay's name), "+
			"socks5h:// (the proxy resolves it) or http:// (CONNECT)", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return fmt.Errorf("no host: use %s://[user:pass@]host:port", u.Scheme)
	}
	if !validHost(u.Hostname()) {
		return fmt.Errorf("%q is not a host name or IP address", u.Hostname())
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("no port, or not a port (1-65535): use %s://%s:PORT", u.Scheme, u.Hostname())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("unexpected path, query or fragment: use %s://[user:pass@]host:port", u.Scheme)
	}
	if u.User != nil && u.User.Username() == "" {
		return errors.New("the user before the @ is empty")
	}
	return nil
}

// clientCert checks cert_file and key_file: both or neither, absolute, and
// (unless secrets are skipped) a certificate and the private key that
// matches it.
func (x *relayResolver) clientCert() {
	t, c := x.r.TLS, x.c
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return
	case t.KeyFile == "":
		c.add("relay.tls.cert_file", "is set but relay.tls.key_file is not: a client certificate needs its key")
		return
	case t.CertFile == "":
		c.add("relay.tls.key_file", "is set but relay.tls.cert_file is not")
		return
	}
	ok := true
	for _, f := range []struct{ key, path string }{{"relay.tls.cert_file", t.CertFile}, {"relay.tls.key_file", t.KeyFile}} {
		if !filepath.IsAbs(f.path) {
			c.add(f.key, "%q is not an absolute path", f.path)
			ok = false
		}
	}
	if !ok || x.skipSecrets {
		return
	}
	var ce *certError
	if _, err := LoadClientCertificate(t.CertFile, t.KeyFile); errors.As(err, &ce) {
		c.add(ce.key, "%v", ce.err)
	}
}

// certError is a client certificate problem and the key it belongs to.
type certError struct {
	key string // relay.tls.cert_file or relay.tls.key_file
	err error
}

func (e *certError) Error() string { return e.key + ": " + e.err.Error() }
func (e *certError) Unwrap() error { return e.err }

// LoadClientCertificate reads relay.tls.cert_file and key_file. Its errors
// name the key at fault ("relay.tls.key_file: …"); they never quote the
// private key.
func LoadClientCertificate(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &certError{"relay.tls.cert_file", err}
	}
	block, rest := pem.Decode(certPEM)
	for block != nil && block.Type != "CERTIFICATE" {
		block, rest = pem.Decode(rest)
	}
	if block == nil {
		return tls.Certificate{}, &certError{"relay.tls.cert_file", fmt.Errorf("%s holds no PEM certificate", certFile)}
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return tls.Certificate{}, &certError{"relay.tls.cert_file", fmt.Errorf("%s: %v", certFile, err)}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &certError{"relay.tls.key_file", err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &certError{"relay.tls.key_file", fmt.Errorf("%s: %v", keyFile, err)}
	}
	return cert, nil
}

// redactQueryProxy hides the password of a proxy given in the relay url as
// a query option (smtp://host?proxy=socks5://user:pass@proxy:1080).
func redactQueryProxy(u *url.URL) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || !q.Has("proxy") {
		return
	}
	for i, p := range q["proxy"] {
		q["proxy"][i] = redactURL(p)
	}
	u.RawQuery = q.Encode()
}
