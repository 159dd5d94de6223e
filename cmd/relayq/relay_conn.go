package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"

	"relayq/config"
)

// relayTLS is the [relay.tls] section as a crypto/tls client configuration:
// the name to verify, the CAs to trust, the client certificate and the
// lowest version. Errors name the key at fault.
func relayTLS(r config.RelayConfig) (*tls.Config, error) {
	c := &tls.Config{
		ServerName:         r.TLS.ServerName,
		InsecureSkipVerify: !r.TLS.RejectUnauthorized,
		MinVersion:         uint16(r.TLS.MinVersion),
	}
	if c.ServerName == "" {
		c.ServerName = r.Host
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if r.TLS.CAFile != "" {
		pem, err := os.ReadFile(r.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("relay.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("relay.tls.ca_file: %s holds no PEM certificate", r.TLS.CAFile)
		}
		c.RootCAs = pool
	}
	if r.TLS.CertFile != "" || r.TLS.KeyFile != "" {
		cert, err := config.LoadClientCertificate(r.TLS.CertFile, r.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// relayProxy parses relay.proxy; nil when there is none.
func relayProxy(r config.RelayConfig) (*url.URL, error) {
	if r.Proxy == "" {
		return nil, nil
	}
	if err := config.CheckProxyURL(r.Proxy); err != nil {
		return nil, fmt.Errorf("relay.proxy: %w", err)
	}
	return url.Parse(r.Proxy)
}
