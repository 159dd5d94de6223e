package transport

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/proxy"
)

// dialProxy connects to the relay at addr (host:port) through Options.Proxy.
// Errors name the proxy without its password.
func (t *Transport) dialProxy(ctx context.Context, addr string) (net.Conn, error) {
	u := t.opts.Proxy
	var c net.Conn
	var err error
	switch u.Scheme {
	case "socks5", "socks5h":
		c, err = t.dialSOCKS(ctx, addr)
	case "http":
		c, err = t.dialHTTPConnect(ctx, addr)
	default:
		err = fmt.Errorf("unsupported scheme %q (socks5, socks5h, http)", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("via proxy %s: %w", proxyName(u), err)
	}
	return c, nil
}

// proxyName is the proxy as logs and errors show it: scheme and host, never
// the credentials.
func proxyName(u *url.URL) string { return u.Scheme + "://" + u.Host }

// dialSOCKS asks a SOCKS5 proxy (RFC 1928, with RFC 1929 user/password
// when the url has a user) to connect to addr. For socks5 transport resolves
// the relay's name itself, within DNSTimeout, and asks for each IP in turn;
// for socks5h it passes the name and the proxy resolves it.
func (t *Transport) dialSOCKS(ctx context.Context, addr string) (net.Conn, error) {
	u := t.opts.Proxy
	var auth *proxy.Auth
	if u.User != nil {
		pass, _ := u.User.Password()
		auth = &proxy.Auth{User: u.User.Username(), Password: pass}
	}
	d, err := proxy.SOCKS5("tcp", u.Host, auth, forwardDialer(t.dialTCP))
	if err != nil {
		return nil, err
	}
	socks := d.(proxy.ContextDialer) // x/net/proxy's SOCKS5 dialer always is one
	if u.Scheme == "socks5h" {
		return socks.DialContext(ctx, "tcp", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := t.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	return eachAddr(ctx, ips, func(ctx context.Context, ip string) (net.Conn, error) {
		return socks.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
	})
}

// forwardDialer makes a dial function into the proxy.Dialer through which
// x/net/proxy reaches the SOCKS server.
type forwardDialer func(ctx context.Context, addr string) (net.Conn, error)

func (f forwardDialer) Dial(network, addr string) (net.Conn, error) {
	return f.DialContext(context.Background(), network, addr)
}

func (f forwardDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" {
		return nil, fmt.Errorf("proxy over %s is not supported", network)
	}
	return f(ctx, addr)
}

// dialHTTPConnect opens a tunnel to addr with an HTTP CONNECT request
// (RFC 9110 §9.3.6), with Proxy-Authorization: Basic when the url has a
// user. A reply other than 2xx fails with the proxy's status line.
func (t *Transport) dialHTTPConnect(ctx context.Context, addr string) (net.Conn, error) {
	u := t.opts.Proxy
	c, err := t.dialTCP(ctx, u.Host)
	if err != nil {
		return nil, err
	}
	tunnel, err := httpConnect(ctx, c, u, addr)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tunnel, nil
}

func httpConnect(ctx context.Context, c net.Conn, u *url.URL, addr string) (net.Conn, error) {
	if deadline, ok := ctx.Deadline(); ok {
		c.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(past) })
	defer stop()
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(c); err != nil {
		return nil, fmt.Errorf("CONNECT %s: %w", addr, ctxCause(ctx, err))
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("CONNECT %s: %w", addr, ctxCause(ctx, err))
	}
	// resp.Body is left alone: after a 2xx, what follows is the tunnel.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("CONNECT %s: %s %s", addr, resp.Proto, resp.Status)
	}
	if !stop() {
		return nil, fmt.Errorf("CONNECT %s: %w", addr, ctx.Err())
	}
	c.SetDeadline(time.Time{})
	// The relay may already have greeted in the bytes after the reply.
	buffered, _ := br.Peek(br.Buffered())
	return &replayConn{Conn: c, pending: buffered}, nil
}
