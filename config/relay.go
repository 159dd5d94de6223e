package config

import (
	"crypto/x509"
	"encoding"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// urlSetting is one value a relay url sets: key is relative to [relay]
// ("port", "auth.user", "tls.require_tls").
type urlSetting struct {
	key   string
	value any
}

// urlOwnKeys are the keys the url carries in its scheme, host, port and
// userinfo; every other scalar key of [relay] may be given as a query option
// (?max_connections=2&tls.require_tls=true).
var urlOwnKeys = []string{"url", "host", "port", "secure", "lmtp", "socket", "auth.user", "auth.pass"}

// secretKeys are never shown in error messages.
var secretKeys = []string{"auth.pass", "proxy"}

// parseRelayURL reads smtp://user:pass@host:587, smtps://host, lmtp://host or
// lmtp+unix:///path. Its errors never quote the url, which may hold a
// password.
func parseRelayURL(raw string) ([]urlSetting, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.URL is the url itself, password included
		}
		return nil, fmt.Errorf("not a valid url: %v", err)
	}
	var set []urlSetting
	switch u.Scheme {
	case "smtp":
		set = append(set, urlSetting{"secure", false}, urlSetting{"lmtp", false})
	case "smtps":
		set = append(set, urlSetting{"secure", true}, urlSetting{"lmtp", false})
	case "lmtp":
		set = append(set, urlSetting{"secure", false}, urlSetting{"lmtp", true})
	case "lmtp+unix":
		set = append(set, urlSetting{"lmtp", true})
	default:
		return nil, fmt.Errorf("unknown scheme %q: use smtp://, smtps://, lmtp:// or lmtp+unix://", u.Scheme)
	}
	where, err := urlWhere(u)
	if err != nil {
		return nil, err
	}
	set = append(set, where...)
	if u.Fragment != "" {
		return nil, errors.New("unexpected #fragment")
	}
	if u.User != nil {
		if u.User.Username() == "" {
			return nil, errors.New("the user before the @ is empty")
		}
		set = append(set, urlSetting{"auth.user", u.User.Username()})
		if pass, ok := u.User.Password(); ok {
			set = append(set, urlSetting{"auth.pass", pass})
		}
	}
	opts, err := urlQuery(u.RawQuery)
	if err != nil {
		return nil, err
	}
	return append(set, opts...), nil
}

// urlWhere reads the host and port, or for lmtp+unix the socket path.
func urlWhere(u *url.URL) ([]urlSetting, error) {
	if u.Opaque != "" {
		return nil, fmt.Errorf("expected %s://host", u.Scheme)
	}
	if u.Scheme == "lmtp+unix" {
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, errors.New("lmtp+unix takes an absolute socket path: lmtp+unix:///run/dovecot/lmtp")
		}
		return []urlSetting{{"socket", u.Path}}, nil
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("no host: use %s://host[:port]", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("unexpected path %q: use %s://[user:pass@]host[:port]", u.Path, u.Scheme)
	}
	set := []urlSetting{{"host", u.Hostname()}}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s is not a port (1-65535)", p)
		}
		set = append(set, urlSetting{"port", n})
	}
	return set, nil
}

// urlQuery reads query options: each a scalar key of [relay] other than the
// ones the url spells itself, written as in the file ("tls.ca_file").
func urlQuery(raw string) ([]urlSetting, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("bad query: %v", err)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var set []urlSetting
	for _, k := range keys {
		f, ok := fieldByKey(reflect.ValueOf(&RelayConfig{}).Elem(), k)
		if !ok || slices.Contains(urlOwnKeys, k) || f.Kind() == reflect.Struct && !isText(f) {
			return nil, fmt.Errorf("unknown query option %q", k)
		}
		if isSecretKey(k) {
			return nil, fmt.Errorf("query option %q is a secret, which would show in logs as part of the url: set it in [relay.auth] or its _file", k)
		}
		if len(q[k]) > 1 {
			return nil, fmt.Errorf("query option %q is given twice", k)
		}
		v, err := parseScalar(f.Type(), q[k][0])
		if err != nil {
			return nil, fmt.Errorf("query option %s: %v", k, err)
		}
		set = append(set, urlSetting{k, v})
	}
	return set, nil
}

// fieldByKey finds the field of struct v with dotted toml key ("tls.ca_file").
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	for _, name := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct || isText(v) {
			return reflect.Value{}, false
		}
		next := reflect.Value{}
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("toml") == name {
				next = v.Field(i)
			}
		}
		if !next.IsValid() {
			return reflect.Value{}, false
		}
		v = next
	}
	return v, true
}

// isText reports whether v decodes itself from text (Duration).
func isText(v reflect.Value) bool {
	return reflect.PointerTo(v.Type()).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

// parseScalar parses s as a value of type t, for url query options.
func parseScalar(t reflect.Type, s string) (any, error) {
	p := reflect.New(t)
	if u, ok := p.Interface().(encoding.TextUnmarshaler); ok {
		err := u.UnmarshalText([]byte(s))
		return p.Elem().Interface(), err
	}
	switch t.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return b, nil
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case reflect.String:
		return s, nil
	}
	return nil, fmt.Errorf("cannot be set in the url")
}

// relayResolver folds the url into the separate keys and checks [relay].
// from records the keys the url set, so errors can name relay.url for them.
type relayResolver struct {
	r           *RelayConfig
	c           *checker
	from        map[string]bool
	skipSecrets bool
	getenv      func(string) string // for relay.auth.pass_env
}

// key names the key k of [relay] for an error: "relay.url" if the url set it.
func (x *relayResolver) key(k string) string {
	if x.from[k] {
		return "relay.url"
	}
	return "relay." + k
}

func (l loader) resolveRelay(r *RelayConfig, c *checker) {
	x := &relayResolver{r: r, c: c, from: map[string]bool{}, skipSecrets: l.skipSecrets, getenv: l.getenv}
	if r.URL != "" && !x.applyURL() {
		return
	}
	x.where()
	x.auth()
	x.tls()
	x.conn()
	x.limits()
}

// applyURL sets the fields the url gives; a key the file also sets must agree.
func (x *relayResolver) applyURL() bool {
	set, err := parseRelayURL(x.r.URL)
	if err != nil {
		x.c.add("relay.url", "%v", err)
		return false
	}
	rv := reflect.ValueOf(x.r).Elem()
	for _, s := range set {
		f, _ := fieldByKey(rv, s.key)
		full := "relay." + s.key
		switch {
		case x.c.set(full) && f.Interface() != s.value && slices.Contains(secretKeys, s.key):
			x.c.add(full, "disagrees with relay.url; set one or the other")
		case x.c.set(full) && f.Interface() != s.value:
			x.c.add(full, "%s disagrees with relay.url, which says %s; set one or the other",
				show(f.Interface()), show(s.value))
		default:
			f.Set(reflect.ValueOf(s.value))
			x.from[s.key] = true
		}
	}
	return true
}

// show formats a value for an error message.
func show(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// where checks host and port, or the unix socket.
func (x *relayResolver) where() {
	r, c := x.r, x.c
	if r.Socket != "" {
		x.socket()
		return
	}
	switch {
	case c.set("relay.port") && (r.Port < 1 || r.Port > 65535):
		c.add("relay.port", "%d is not a port (1-65535)", r.Port)
	case r.Port == 0 && r.LMTP:
		r.Port = 24
	case r.Port == 0 && r.Secure:
		r.Port = 465
	case r.Port == 0:
		r.Port = 587
	}
	if !validHost(r.Host) {
		c.add(x.key("host"), "%q is not a host name or IP address", r.Host)
	}
}

// socket checks an LMTP relay on a unix socket; Host and Port do not apply.
func (x *relayResolver) socket() {
	r, c := x.r, x.c
	sock := x.key("socket")
	if !r.LMTP {
		c.add(sock, "a unix socket relay speaks LMTP: set relay.lmtp = true (or use lmtp+unix://)")
	}
	if r.Secure {
		c.add(x.key("secure"), "TLS from the first byte (secure) is not supported on a unix socket (%s)", sock)
	}
	for _, k := range []string{"host", "port"} {
		if x.c.set("relay." + k) {
			c.add("relay."+k, "is set together with %s; a relay is either a unix socket or a host and port", sock)
		}
	}
	checkSocketPath(c, sock, r.Socket)
	r.Host, r.Port = "", 0
}

// tls checks [relay.tls].
func (x *relayResolver) tls() {
	t, c := &x.r.TLS, x.c
	if t.RequireTLS && t.IgnoreTLS {
		c.add("relay.tls.require_tls", "is true, and so is relay.tls.ignore_tls: choose one")
	}
	if x.r.Secure && t.IgnoreTLS {
		c.add("relay.tls.ignore_tls", "contradicts %s: secure means TLS from the first byte", x.key("secure"))
	}
	switch {
	case t.ServerName != "" && !isHostname(t.ServerName):
		c.add("relay.tls.servername", "%q is not a host name", t.ServerName)
	case t.ServerName == "" && x.r.Socket == "":
		// Filled in so that the transport never hands crypto/tls an empty
		// ServerName, which would skip the host name check after STARTTLS.
		t.ServerName = x.r.Host
	}
	if t.CAFile != "" {
		x.checkCAFile()
	}
}

func (x *relayResolver) checkCAFile() {
	f, c := x.r.TLS.CAFile, x.c
	if !filepath.IsAbs(f) {
		c.add("relay.tls.ca_file", "%q is not an absolute path", f)
		return
	}
	if x.skipSecrets {
		return
	}
	pem, err := os.ReadFile(f)
	if err != nil {
		c.add("relay.tls.ca_file", "%v", err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		c.add("relay.tls.ca_file", "%s holds no PEM certificate", f)
	}
}

// limits checks the name, timeouts and pool sizes.
func (x *relayResolver) limits() {
	r, c := x.r, x.c
	if !validName(r.Name) {
		c.add("relay.name", "%q is not a host name or address literal", r.Name)
	}
	positive(c, "relay.connection_timeout", r.ConnectionTimeout)
	positive(c, "relay.greeting_timeout", r.GreetingTimeout)
	positive(c, "relay.socket_timeout", r.SocketTimeout)
	atLeast(c, x.key("max_connections"), r.MaxConnections, 1)
	atLeast(c, x.key("max_messages"), r.MaxMessages, 1)
	x.poolLimits()
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validHost accepts what can be dialled: a host name or a bare IP address.
func validHost(s string) bool { return isHostname(s) || net.ParseIP(s) != nil }

// validName accepts an EHLO name: a host name, or an address literal
// ("[192.0.2.1]", "[IPv6:2001:db8::1]"). A bare IP is accepted too; the
// transport brackets it.
func validName(s string) bool {
	if inner, ok := strings.CutPrefix(s, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		return ok && net.ParseIP(strings.TrimPrefix(inner, "IPv6:")) != nil
	}
	return validHost(s)
}

// isHostname checks the characters and lengths of a DNS name. It is what
// keeps a CR or LF out of the EHLO line.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
