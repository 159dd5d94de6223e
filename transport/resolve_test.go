package transport

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// fakeDNS is a LookupHost answering from a table; names not in it hang
// until the lookup's context ends, like a resolver that never answers.
type fakeDNS struct {
	mu      sync.Mutex
	names   map[string][]string
	asked   []string
	timeout chan time.Duration // the time each hanging lookup was given
}

func newFakeDNS(names map[string][]string) *fakeDNS {
	return &fakeDNS{names: names, timeout: make(chan time.Duration, 10)}
}

func (d *fakeDNS) lookup(ctx context.Context, host string) ([]string, error) {
	d.mu.Lock()
	d.asked = append(d.asked, host)
	addrs, ok := d.names[host]
	d.mu.Unlock()
	if ok {
		return addrs, nil
	}
	start := time.Now()
	<-ctx.Done()
	d.timeout <- time.Since(start)
	return nil, ctx.Err()
}

func (d *fakeDNS) lookups() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.asked)
}

// dialLog is a Dial that records every address dialled, then dials it
// (bound to local, if set).
type dialLog struct {
	mu    sync.Mutex
	addrs []string
	local string
}

func (l *dialLog) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	l.mu.Lock()
	l.addrs = append(l.addrs, addr)
	l.mu.Unlock()
	return localDialer(l.local)(ctx, network, addr)
}

func (l *dialLog) dialled() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.addrs)
}

// TestDNSTimeout: a resolver that never answers fails the Send at
// StageDial once DNSTimeout has passed, long before ConnectTimeout.
func TestDNSTimeout(t *testing.T) {
	dns := newFakeDNS(nil)
	tr := New(Options{
		Address:        "relay.test:25",
		LocalName:      localName,
		DNSTimeout:     150 * time.Millisecond,
		ConnectTimeout: 10 * time.Second,
		LookupHost:     dns.lookup,
	})
	t.Cleanup(func() { tr.Close() })
	start := time.Now()
	_, err := send(t, tr, message("s@example.org", "r@example.net"))
	elapsed := time.Since(start)
	wantError(t, err, StageDial, true)
	if !strings.Contains(err.Error(), "resolve relay.test: no answer within 150ms") {
		t.Errorf("err = %v, want it to say the lookup of relay.test got no answer within 150ms", err)
	}
	if given := <-dns.timeout; given < 140*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("lookup given %v, Send returned after %v; want about DNSTimeout (150ms)", given, elapsed)
	}
}

// TestResolveInOrder: a relay name with several addresses is tried address
// by address in the resolver's order; an address that refuses the
// connection, or that does not answer, does not stop the next from being
// tried within ConnectTimeout.
func TestResolveInOrder(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	_, port, _ := net.SplitHostPort(srv.Addr())
	t.Run("refused, then served", func(t *testing.T) {
		dns := newFakeDNS(map[string][]string{"relay.test": {"127.0.0.2", "127.0.0.1"}})
		var dl dialLog
		tr := newTransport(t, srv, func(o *Options) {
			o.Address, o.LookupHost, o.Dial = "relay.test:"+port, dns.lookup, dl.dial
		})
		mustSend(t, tr, message("s@example.org", "r@example.net"))
		want := []string{"127.0.0.2:" + port, "127.0.0.1:" + port}
		if got := dl.dialled(); !slices.Equal(got, want) {
			t.Errorf("dialled %q, want %q", got, want)
		}
	})
	t.Run("unanswered, then served", func(t *testing.T) {
		t.Parallel()
		dns := newFakeDNS(map[string][]string{"relay.test": {"192.0.2.1", "127.0.0.1"}})
		tr := newTransport(t, srv, func(o *Options) {
			o.Address, o.LookupHost = "relay.test:"+port, dns.lookup
			// 2s (minAddrTimeout) for the black hole leaves 500ms.
			o.ConnectTimeout = 2500 * time.Millisecond
			o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if strings.HasPrefix(addr, "192.0.2.1:") { // a black hole
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return localDialer("")(ctx, network, addr)
			}
		})
		mustSend(t, tr, message("s@example.org", "r@example.net"))
	})
	t.Run("every address fails", func(t *testing.T) {
		dns := newFakeDNS(map[string][]string{"relay.test": {"127.0.0.2", "127.0.0.3"}})
		tr := newTransport(t, srv, func(o *Options) { o.Address, o.LookupHost = "relay.test:"+port, dns.lookup })
		_, err := send(t, tr, message("s@example.org", "r@example.net"))
		wantError(t, err, StageDial, true)
		for _, a := range []string{"127.0.0.2:" + port, "127.0.0.3:" + port} {
			if !strings.Contains(err.Error(), a) {
				t.Errorf("err = %v, want it to name %s", err, a)
			}
		}
	})
}

// TestLocalAddress: connections leave from LocalAddress, and a relay name's
// addresses of the other IP family are skipped.
func TestLocalAddress(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	_, port, _ := net.SplitHostPort(srv.Addr())
	dns := newFakeDNS(map[string][]string{"relay.test": {"::1", "127.0.0.1"}})
	dl := dialLog{local: "127.0.0.2"}
	tr := newTransport(t, srv, func(o *Options) {
		o.Address, o.LookupHost, o.LocalAddress = "relay.test:"+port, dns.lookup, "127.0.0.2"
	})
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	host, _, _ := net.SplitHostPort(srv.Remotes()[0])
	if host != "127.0.0.2" {
		t.Errorf("relay saw the connection come from %s, want 127.0.0.2", srv.Remotes()[0])
	}

	// The same through a recording Dial, to see ::1 skipped.
	tr = newTransport(t, srv, func(o *Options) {
		o.Address, o.LookupHost, o.LocalAddress, o.Dial = "relay.test:"+port, dns.lookup, "127.0.0.2", dl.dial
	})
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if got := dl.dialled(); !slices.Equal(got, []string{"127.0.0.1:" + port}) {
		t.Errorf("dialled %q, want only the IPv4 address", got)
	}
}
