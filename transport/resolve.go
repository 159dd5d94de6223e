package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// minAddrTimeout is the least time an address of a host gets before the
// next is tried, as net.Dialer does: a relay name with an unreachable first
// address must not use up the whole ConnectTimeout.
const minAddrTimeout = 2 * time.Second

// connect opens the connection to the relay within ConnectTimeout: to the
// unix socket, through the proxy, or to the relay's addresses in turn.
func (t *Transport) connect(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.ConnectTimeout)
	defer cancel()
	if t.opts.Network != "tcp" {
		return t.opts.Dial(ctx, t.opts.Network, t.opts.Address)
	}
	if t.opts.Proxy != nil {
		return t.dialProxy(ctx, t.opts.Address)
	}
	return t.dialTCP(ctx, t.opts.Address)
}

// dialTCP connects to host:port, resolving host (unless it is an IP) and
// trying its addresses in order.
func (t *Transport) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := t.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	return eachAddr(ctx, ips, func(ctx context.Context, ip string) (net.Conn, error) {
		return t.opts.Dial(ctx, "tcp", net.JoinHostPort(ip, port))
	})
}

// resolve returns the addresses of host: host itself when it is an IP
// address, else the resolver's answer within DNSTimeout. With LocalAddress
// set, only addresses of its family are kept.
func (t *Transport) resolve(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, t.opts.DNSTimeout)
	defer cancel()
	addrs, err := t.opts.LookupHost(lctx, host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		if lctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v: %w", t.opts.DNSTimeout, err)
		}
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	local := net.ParseIP(t.opts.LocalAddress)
	if local == nil {
		return addrs, nil
	}
	var same []string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && (ip.To4() != nil) == (local.To4() != nil) {
			same = append(same, a)
		}
	}
	if len(same) == 0 {
		return nil, fmt.Errorf("resolve %s: no address of the family of the local address %s (got %v)", host, local, addrs)
	}
	return same, nil
}

// eachAddr calls dial for each address in turn until one connects. Each
// gets an equal share of the time left (at least minAddrTimeout), so that a
// later address is still tried when an earlier one does not answer. The
// error names every address that failed.
func eachAddr(ctx context.Context, addrs []string, dial func(context.Context, string) (net.Conn, error)) (net.Conn, error) {
	var errs []error
	for i, a := range addrs {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok && i < len(addrs)-1 {
			left := time.Until(deadline)
			share := left / time.Duration(len(addrs)-i)
			share = max(share, min(minAddrTimeout, left))
			actx, cancel = context.WithTimeout(ctx, share)
		}
		c, err := dial(actx, a)
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err) // a dial error names the address
		if ctx.Err() != nil {
			break
		}
	}
	return nil, joinErrors(errs)
}

// joinErrors is errors.Join on one line, since the text ends up in the
// queue as the message's last reply.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return &addrErrors{errs}
}

type addrErrors struct{ errs []error }

func (e *addrErrors) Error() string {
	var b strings.Builder
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *addrErrors) Unwrap() []error { return e.errs }

// localDialer is the default Options.Dial: a net.Dialer bound to
// localAddr ("" for the system's choice) for TCP.
func localDialer(localAddr string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if localAddr != "" && network != "unix" {
			ip := net.ParseIP(localAddr)
			if ip == nil {
				return nil, fmt.Errorf("local address %q is not an IP address", localAddr)
			}
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		return d.DialContext(ctx, network, addr)
	}
}
