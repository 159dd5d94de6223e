package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"relayq"
	"relayq/transport"
)

// transportOptions turns the [relay] section into transport.Options and a
// name for the relay in logs.
func transportOptions(r relayq.RelayConfig, log *slog.Logger) (transport.Options, string, error) {
	o := transport.Options{
		Network:           "tcp",
		Address:           net.JoinHostPort(r.Host, strconv.Itoa(r.Port)),
		LMTP:              r.LMTP,
		Secure:            r.Secure,
		RequireTLS:        r.TLS.RequireTLS,
		IgnoreTLS:         r.TLS.IgnoreTLS,
		LocalName:         r.Name,
		Username:          r.Auth.User,
		Password:          r.Auth.Pass,
		AllowInsecureAuth: r.Auth.AllowInsecure,
		ConnectTimeout:    r.ConnectionTimeout.Duration,
		GreetingTimeout:   r.GreetingTimeout.Duration,
		CommandTimeout:    r.SocketTimeout.Duration,
		DataTimeout:       r.SocketTimeout.Duration,
		MaxConnections:    r.MaxConnections,
		MaxMessages:       r.MaxMessages,
		Logger:            log,
	}
	scheme := "smtp"
	switch {
	case r.LMTP:
		scheme = "lmtp"
	case r.Secure:
		scheme = "smtps"
	}
	name := scheme + "://" + o.Address
	if r.Socket != "" {
		o.Network, o.Address = "unix", r.Socket
		name = "lmtp+unix://" + r.Socket
	}
	tlsConf := &tls.Config{
		ServerName:         r.TLS.ServerName,
		InsecureSkipVerify: !r.TLS.RejectUnauthorized,
		MinVersion:         tls.VersionTLS12,
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = r.Host
	}
	if r.TLS.CAFile != "" {
		pem, err := os.ReadFile(r.TLS.CAFile)
		if err != nil {
			return o, "", fmt.Errorf("relay.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return o, "", fmt.Errorf("relay.tls.ca_file: %s holds no PEM certificate", r.TLS.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	o.TLS = tlsConf
	return o, name, nil
}
