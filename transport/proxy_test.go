package transport

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// testProxy is a SOCKS5 (RFC 1928, RFC 1929) or HTTP CONNECT proxy on
// 127.0.0.1:0 that records the target each client asked for, connects to
// it (names through its own table), and relays bytes both ways. Protocol
// errors go to errs, which the test reads; its goroutines never touch t.
type testProxy struct {
	ln         net.Listener
	user, pass string            // required credentials; "" = none
	names      map[string]string // host name → IP, the proxy's own resolver
	errs       chan error

	mu        sync.Mutex
	targets   []string
	upstreams []string // local address of each connection to a target
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

func newTestProxy(t *testing.T, kind, user, pass string, names map[string]string) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{ln: ln, user: user, pass: pass, names: names, errs: make(chan error, 10), conns: map[net.Conn]bool{}}
	serve := p.socks5
	if kind == "http" {
		serve = p.httpConnect
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				if err := serve(c); err != nil {
					p.errs <- err
				}
			}()
		}
	}()
	t.Cleanup(p.close)
	return p
}

// url is the proxy's url with the given scheme and credentials.
func (p *testProxy) url(scheme string, user *url.Userinfo) *url.URL {
	return &url.URL{Scheme: scheme, Host: p.ln.Addr().String(), User: user}
}

func (p *testProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
}

func (p *testProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *testProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// carried reports whether the proxy opened a connection from addr: the
// client address a relay saw.
func (p *testProxy) carried(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.upstreams, addr)
}

// noErrors fails the test if the proxy saw a protocol error.
func (p *testProxy) noErrors(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.errs:
		t.Errorf("proxy: %v", err)
	default:
	}
}

// connect records target, dials it and relays bytes until either side
// closes. reply is called once the target answered (or failed to).
func (p *testProxy) connect(c net.Conn, r io.Reader, target string, reply func(ok bool) error) error {
	p.mu.Lock()
	p.targets = append(p.targets, target)
	p.mu.Unlock()
	host, port, _ := net.SplitHostPort(target)
	if ip, ok := p.names[host]; ok {
		host = ip
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 2*time.Second)
	if err != nil {
		return reply(false)
	}
	p.track(up)
	defer up.Close()
	p.mu.Lock()
	p.upstreams = append(p.upstreams, up.LocalAddr().String())
	p.mu.Unlock()
	if err := reply(true); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		io.Copy(up, r)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	c.Close()
	<-done
	return nil
}

func (p *testProxy) socks5(c net.Conn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil || head[0] != 5 {
		return fmt.Errorf("socks: bad greeting %v (%v)", head, err)
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return err
	}
	want := byte(0) // no authentication
	if p.user != "" {
		want = 2 // user/password
	}
	if !strings.ContainsRune(string(methods), rune(want)) {
		c.Write([]byte{5, 0xff})
		return nil // the client offered no acceptable method: its problem
	}
	c.Write([]byte{5, want})
	if want == 2 {
		user, pass, err := readUserPass(br)
		if err != nil {
			return err
		}
		if user != p.user || pass != p.pass {
			c.Write([]byte{1, 1})
			return nil
		}
		c.Write([]byte{1, 0})
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(br, req); err != nil || req[0] != 5 || req[1] != 1 {
		return fmt.Errorf("socks: bad request %v (%v)", req, err)
	}
	var host string
	switch req[3] {
	case 1, 4: // IPv4, IPv6
		ip := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		if _, err := io.ReadFull(br, ip); err != nil {
			return err
		}
		host = net.IP(ip).String()
	case 3: // domain name
		n, err := br.ReadByte()
		if err != nil {
			return err
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return err
		}
		host = string(name)
	default:
		return fmt.Errorf("socks: address type %d", req[3])
	}
	var port uint16
	if err := binary.Read(br, binary.BigEndian, &port); err != nil {
		return err
	}
	c.SetDeadline(time.Time{})
	return p.connect(c, br, net.JoinHostPort(host, strconv.Itoa(int(port))), func(ok bool) error {
		status := byte(0)
		if !ok {
			status = 5 // connection refused
		}
		_, err := c.Write([]byte{5, status, 0, 1, 0, 0, 0, 0, 0, 0})
		return err
	})
}

func readUserPass(br *bufio.Reader) (user, pass string, err error) {
	ver, err := br.ReadByte()
	if err != nil || ver != 1 {
		return "", "", fmt.Errorf("socks: bad auth version %d (%v)", ver, err)
	}
	var fields [2]string
	for i := range fields {
		n, err := br.ReadByte()
		if err != nil {
			return "", "", err
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", "", err
		}
		fields[i] = string(b)
	}
	return fields[0], fields[1], nil
}

func (p *testProxy) httpConnect(c net.Conn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return fmt.Errorf("http proxy: %v", err)
	}
	if req.Method != http.MethodConnect {
		return fmt.Errorf("http proxy: method %s", req.Method)
	}
	if p.user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
		if req.Header.Get("Proxy-Authorization") != want {
			_, err := io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
			return err
		}
	}
	c.SetDeadline(time.Time{})
	return p.connect(c, br, req.Host, func(ok bool) error {
		// HTTP/1.0 without Content-Length, as some proxies answer: what
		// follows must still be read as the tunnel.
		status := "HTTP/1.0 200 Connection established"
		if !ok {
			status = "HTTP/1.1 502 Bad Gateway"
		}
		_, err := io.WriteString(c, status+"\r\n\r\n")
		return err
	})
}

// TestSOCKS5Proxy: the relay session goes through a SOCKS5 proxy that
// requires credentials. With socks5 relayq resolves the relay's name and
// asks the proxy for an IP; with socks5h it asks for the name, which only
// the proxy resolves. Wrong credentials fail the dial.
func TestSOCKS5Proxy(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
	_, port, _ := net.SplitHostPort(srv.Addr())
	relayAddr := "relay.test:" + port
	tests := []struct {
		scheme     string
		pass       string
		wantTarget string
		wantLookup bool
		wantErr    bool
	}{
		{"socks5", "s3cret", "127.0.0.1:" + port, true, false},
		{"socks5h", "s3cret", relayAddr, false, false},
		{"socks5h", "wrong", "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.scheme+"/"+tc.pass, func(t *testing.T) {
			p := newTestProxy(t, "socks5", "relayq", "s3cret", map[string]string{"relay.test": "127.0.0.1"})
			dns := newFakeDNS(map[string][]string{"relay.test": {"127.0.0.1"}})
			n := len(srv.Messages())
			tr := newTransport(t, srv, func(o *Options) {
				o.Address, o.LookupHost = relayAddr, dns.lookup
				o.Proxy = p.url(tc.scheme, url.UserPassword("relayq", tc.pass))
				o.TLS.ServerName = "127.0.0.1" // the certificate's name
			})
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			p.noErrors(t)
			if tc.wantErr {
				wantError(t, err, StageDial, true)
				if strings.Contains(err.Error(), tc.pass) {
					t.Errorf("err = %v shows the proxy password", err)
				}
				if len(srv.Messages()) != n || len(p.asked()) != 0 {
					t.Errorf("proxy connected to %q with wrong credentials", p.asked())
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := p.asked(); len(got) != 1 || got[0] != tc.wantTarget {
				t.Errorf("proxy asked for %q, want %q", got, tc.wantTarget)
			}
			if looked := len(dns.lookups()) > 0; looked != tc.wantLookup {
				t.Errorf("relayq looked up %q; want lookups %v", dns.lookups(), tc.wantLookup)
			}
			if got := srv.WaitMessages(t, n+1, time.Second)[n]; !got.TLS {
				t.Errorf("delivered through the proxy without STARTTLS")
			}
			if remote := srv.Remotes()[len(srv.Remotes())-1]; !p.carried(remote) {
				t.Errorf("relay saw the session come from %s, not from the proxy", remote)
			}
		})
	}
}

// TestHTTPConnectProxy: the relay session goes through an HTTP CONNECT
// proxy, with Proxy-Authorization when credentials are set; the proxy is
// asked for the relay's name. A 407 fails the dial with the proxy's status
// line.
func TestHTTPConnectProxy(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	_, port, _ := net.SplitHostPort(srv.Addr())
	relayAddr := "relay.test:" + port
	p := newTestProxy(t, "http", "relayq", "s3cret", map[string]string{"relay.test": "127.0.0.1"})

	t.Run("authorized", func(t *testing.T) {
		tr := newTransport(t, srv, func(o *Options) {
			o.Address, o.LookupHost = relayAddr, noLookup(t)
			o.Proxy = p.url("http", url.UserPassword("relayq", "s3cret"))
		})
		mustSend(t, tr, message("s@example.org", "r@example.net"))
		if got := p.asked(); len(got) != 1 || got[0] != relayAddr {
			t.Errorf("proxy asked for %q, want %q", got, relayAddr)
		}
		if remote := srv.Remotes()[len(srv.Remotes())-1]; !p.carried(remote) {
			t.Errorf("relay saw the session come from %s, not from the proxy", remote)
		}
	})
	for _, user := range []*url.Userinfo{url.UserPassword("relayq", "wrong"), nil} {
		t.Run(fmt.Sprintf("407, credentials %v", user.String() != ""), func(t *testing.T) {
			tr := newTransport(t, srv, func(o *Options) {
				o.Address, o.LookupHost, o.Proxy = relayAddr, noLookup(t), p.url("http", user)
			})
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			wantError(t, err, StageDial, true)
			if !strings.Contains(err.Error(), "HTTP/1.1 407 Proxy Authentication Required") {
				t.Errorf("err = %v, want the proxy's status line", err)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("err = %v shows the proxy password", err)
			}
		})
	}
	t.Run("relay unreachable", func(t *testing.T) {
		tr := newTransport(t, srv, func(o *Options) {
			o.Address, o.LookupHost = "127.0.0.1:1", noLookup(t)
			o.Proxy = p.url("http", url.UserPassword("relayq", "s3cret"))
		})
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		wantError(t, err, StageDial, true)
		if !strings.Contains(err.Error(), "502 Bad Gateway") {
			t.Errorf("err = %v, want the proxy's 502", err)
		}
	})
	p.noErrors(t)
}

// TestProxyUnreachable: a proxy that refuses connections is a dial error
// naming the proxy, without its credentials.
func TestProxyUnreachable(t *testing.T) {
	for _, scheme := range []string{"socks5", "socks5h", "http"} {
		t.Run(scheme, func(t *testing.T) {
			tr := New(Options{
				Address:    "127.0.0.1:25",
				LocalName:  localName,
				Proxy:      &url.URL{Scheme: scheme, Host: "127.0.0.1:1", User: url.UserPassword("u", "hunter2")},
				LookupHost: noLookup(t),
			})
			t.Cleanup(func() { tr.Close() })
			_, err := send(t, tr, message("s@example.org", "r@example.net"))
			wantError(t, err, StageDial, true)
			if !strings.Contains(err.Error(), "via proxy "+scheme+"://127.0.0.1:1") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("err = %v, want it to name the proxy without its password", err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) {
				t.Errorf("err = %v, want the connection error inside", err)
			}
		})
	}
}
