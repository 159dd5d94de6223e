package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Content access: where an attachment's bytes may come from besides the
// request itself. Both are off unless the listener allows them.

var (
	errFileAccess = errors.New("file access is disabled on this listener")
	errURLAccess  = errors.New("URL access is disabled on this listener")
	errOutside    = errors.New("path is not under an allowed file root")
	errTooLarge   = errors.New("content larger than the attachment size limit")
)

// readFile reads the attachment at p, which must be absolute and lie under
// one of roots. It is opened through os.Root, which refuses any path that
// leaves the root, by ".." or by a symbolic link (openat2 RESOLVE_BENEATH
// semantics), so a link inside a root cannot reach out of it. When uid is a
// local caller's (>= 0), the file must be theirs or readable by everyone:
// the daemon must not read for a caller what the caller could not.
func readFile(roots []string, p string, uid int, max int64) ([]byte, error) {
	if !filepath.IsAbs(p) {
		return nil, fmt.Errorf("%w: not an absolute path", errOutside)
	}
	for _, root := range roots {
		rel, err := filepath.Rel(filepath.Clean(root), p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			continue
		}
		return readUnder(root, rel, uid, max)
	}
	return nil, errOutside
}

func readUnder(root, rel string, uid int, max int64) ([]byte, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// O_NONBLOCK: a FIFO would otherwise hold the open until a writer
	// came; it is refused below, as is anything not a regular file.
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w: %v", errOutside, err) // escapes (a link out, "..")
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && uid >= 0 && int(st.Uid) != uid && fi.Mode().Perm()&0o004 == 0 {
		return nil, fs.ErrPermission
	}
	if max > 0 && fi.Size() > max {
		return nil, errTooLarge
	}
	return readLimited(f, max)
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	if max <= 0 {
		return io.ReadAll(r)
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err == nil && int64(len(b)) > max {
		return nil, errTooLarge
	}
	return b, err
}

// fetcher fetches href attachments: http and https only, every connection
// (redirects included) checked at dial time against the address actually
// dialled, so a name that resolves to a private address, or changes to one
// between the check and the dial (DNS rebinding), is refused.
type fetcher struct {
	client *http.Client
	max    int64
}

// errPrivate is the dial refusal.
var errPrivate = errors.New("address is loopback, private or otherwise not public")

// publicAddr reports whether a fetch may connect to ip.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() &&
		!cgnat.Contains(ip) && !ip.IsUnspecified()
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func newFetcher(timeout time.Duration, max int64, allow func(netip.AddrPort) bool) *fetcher {
	if allow == nil {
		allow = func(ap netip.AddrPort) bool { return publicAddr(ap.Addr()) }
	}
	d := &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !allow(ap) {
				return fmt.Errorf("%w: %s", errPrivate, address)
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would dial for us, unchecked
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
		DisableKeepAlives:      true,
	}
	c := &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return checkScheme(req.URL)
		},
	}
	return &fetcher{client: c, max: max}
}

func checkScheme(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.User != nil {
		return errors.New("URL with user information")
	}
	return nil
}

// fetch gets href, at most f.max bytes, within the client's timeout.
func (f *fetcher) fetch(ctx context.Context, href string) ([]byte, error) {
	u, err := url.Parse(href)
	if err != nil {
		return nil, err
	}
	if err := checkScheme(u); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	if f.max > 0 && resp.ContentLength > f.max {
		return nil, errTooLarge
	}
	return readLimited(resp.Body, f.max)
}
