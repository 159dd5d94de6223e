package main

import (
	"log/slog"
	"net"
	"strconv"

	"relayq/config"
	"relayq/transport"
)

// transportOptions turns the [relay] section into transport.Options and a
// name for the relay in logs.
func transportOptions(r config.RelayConfig, log *slog.Logger) (transport.Options, string, error) {
	o := transport.Options{
		Network:           "tcp",
		Address:           net.JoinHostPort(r.Host, strconv.Itoa(r.Port)),
		LMTP:              r.LMTP,
		Secure:            r.Secure,
		RequireTLS:        r.TLS.RequireTLS,
		IgnoreTLS:         r.TLS.IgnoreTLS,
		LocalName:         r.Name,
		AllowInsecureAuth: r.Auth.AllowInsecure,
		ConnectTimeout:    r.ConnectionTimeout.Duration,
		GreetingTimeout:   r.GreetingTimeout.Duration,
		CommandTimeout:    r.SocketTimeout.Duration,
		DataTimeout:       r.SocketTimeout.Duration,
		MaxConnections:    r.MaxConnections,
		MaxMessages:       r.MaxMessages,
		NoPool:            !r.Pool,
		IdleTimeout:       r.IdleTimeout.Duration,
		IdleCheck:         r.IdleCheck.Duration,
		RateLimit:         r.RateLimit,
		RateDelta:         r.RateDelta.Duration,
		Logger:            log,
		Debug:             r.Debug,
		LocalAddress:      r.LocalAddress,
		DNSTimeout:        r.DNSTimeout.Duration,
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
	var err error
	if o.TLS, err = relayTLS(r); err != nil {
		return o, "", err
	}
	if o.Proxy, err = relayProxy(r); err != nil {
		return o, "", err
	}
	if o.Auth, err = relayAuth(r.Auth, r.ConnectionTimeout.Duration); err != nil {
		return o, "", err
	}
	return o, name, nil
}
