package transport

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Transport. Zero values mean the documented defaults.
type Options struct {
	Network string // "tcp" (default) or "unix" (LMTP over a Unix socket)
	Address string // "host:port", or a socket path
	LMTP    bool

	Secure     bool // implicit TLS (smtps)
	RequireTLS bool // STARTTLS must succeed, else fail at StageTLS; never send in clear
	IgnoreTLS  bool // never STARTTLS
	// TLS verifies the relay (ServerName, RootCAs, InsecureSkipVerify…).
	// nil means Go's defaults; an empty ServerName means the host part of
	// Address.
	TLS *tls.Config

	LocalName string // EHLO/LHLO name; "" means os.Hostname()

	// Auth: AUTH on every connection when Auth.Username is set (see Auth
	// in auth.go). Never without TLS unless AllowInsecureAuth: a
	// Unix-socket or loopback relay is not exempt by itself, the
	// configuration decides.
	Auth              Auth
	AllowInsecureAuth bool

	ConnectTimeout  time.Duration // dialling; default 2m
	GreetingTimeout time.Duration // the 220 greeting; default 30s
	CommandTimeout  time.Duration // each command's reply and each write outside the body; default 5m
	DataTimeout     time.Duration // each write of the body, and the reply after the final dot; default 10m

	MaxConnections int           // pool size; default 5. Send waits (within its ctx) when all are busy
	MaxMessages    int           // transactions per connection before it is replaced; default 100
	IdleTimeout    time.Duration // idle connections older than this are closed; default 30s
	// IdleCheck: a pooled connection idle longer than this is checked with
	// NOOP before reuse; default 5s.
	IdleCheck time.Duration
	// NoPool: one connection per message, closed with QUIT after it (the
	// seed's pool = false). MaxConnections still bounds how many are open
	// at once.
	NoPool bool
	// RateLimit, when > 0, allows at most this many messages (Sends that
	// reach MAIL FROM) per RateDelta, across all connections; a Send waits
	// (within its ctx) for room. 0 means no limit. See rate.go.
	RateLimit int
	RateDelta time.Duration // the rate window; default 1s

	Logger *slog.Logger // connection events at debug level; nil discards
	// Debug logs the SMTP/LMTP conversation of every connection to Logger
	// at info level, line by line, with AUTH exchanges redacted and the
	// message body reduced to its size (debug.go).
	Debug bool

	// Dial opens each connection transport makes itself: to one address of
	// the relay ("ip:port", or the socket path), or to the proxy. nil means
	// a net.Dialer bound to LocalAddress. It is called with a context
	// bounded by ConnectTimeout. A test seam.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// LocalAddress is the IP address connections to the relay (or to the
	// proxy) are bound to; "" lets the system choose. Relay addresses of
	// the other IP family are skipped.
	LocalAddress string
	// DNSTimeout bounds each host name lookup (the relay's, the proxy's);
	// default 30s. An IP address is never looked up. A host name with
	// several addresses is tried address by address, in the resolver's
	// order, within ConnectTimeout.
	DNSTimeout time.Duration
	// LookupHost resolves a host name; nil means net.DefaultResolver's
	// LookupHost. A test seam.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Proxy, when set, carries every connection to the relay: "socks5"
	// (transport resolves the relay's name and asks for an IP), "socks5h"
	// (the proxy resolves the name) or "http" (CONNECT), with credentials
	// in its User. Only the scheme, User and Host are used.
	Proxy *url.URL
}

// Message is one message to send.
type Message struct {
	From       string    // "" is the null sender
	Recipients []string  // deduplicated by the caller
	Body       io.Reader // CRLF-normalised message (headers and body), streamed
	Size       int64     // the body's size, for SIZE= and the relay's limit
	UTF8       bool      // needs SMTPUTF8
	EightBit   bool      // needs 8BITMIME
	// DSN parameters (RFC 3461) from the submission, passed on when the
	// relay advertises DSN and left out (logged once per connection at
	// debug) when it does not, as Postfix does. See dsn.go.
	DSN DSN
	// RecipientDSN holds NOTIFY and ORCPT per recipient, parallel to
	// Recipients; nil when none was given.
	RecipientDSN []RecipientDSN
}

// Result holds what happened to each recipient of a transaction that went
// through (Send returned no error).
type Result struct {
	Recipients []RecipientResult // in the order of Message.Recipients
	// Transcript is the exchange with the relay for this message, a line
	// per command or reply line ("C: MAIL FROM:<a@example.org>", "S: 250
	// 2.1.0 Ok"), and "* " notes: the greeting, EHLO, STARTTLS and AUTH
	// too when the Send opened a new connection. AUTH responses are
	// redacted and the body is given as its size. At most 8 KiB; a longer
	// one keeps its first and last lines (transcript.go).
	Transcript string
}

// RecipientResult is one recipient's outcome.
type RecipientResult struct {
	Address string
	// Err is nil when the relay accepted the message for this recipient
	// (2xx). Otherwise it is the relay's *smtp.SMTPError for it, untouched
	// (the RCPT reply, the DATA reply, or the LMTP reply after the dot); a
	// *LocalError for an address relayq refused to send; or, for LMTP
	// recipients whose reply was lost when the connection broke after the
	// dot, an *Error with AfterDot set.
	Err error
	// Reply is the relay's final reply text on success, e.g.
	// "2.0.0 Ok: queued as 4Xyz".
	Reply string
}

// Transport sends messages to one relay over a pool of SMTP or LMTP
// connections. It is safe for concurrent use.
type Transport struct {
	opts      Options
	tlsConfig *tls.Config
	localName string
	log       *slog.Logger
	nextID    atomic.Uint64
	woken     atomic.Int64 // times a Send waiting for a connection was woken (BenchmarkSend counts them)
	rate      *rateLimiter // nil without Options.RateLimit
	secrets   *secrets     // scrubbed out of what transport reports (secrets.go)

	mu   sync.Mutex
	idle []*conn // most recently used last
	open int     // connections open or being dialled
	// waiting are the Sends waiting for a connection, longest first; a
	// connection or a slot that frees up wakes one (signal).
	waiting []chan struct{}
	reaper  *time.Timer // closes connections idle for IdleTimeout
	closed  bool
}

// New returns a Transport; it connects lazily, on the first Send.
func New(opts Options) *Transport {
	setDefaults(&opts)
	t := &Transport{opts: opts, log: opts.Logger}
	t.rate = newRateLimiter(opts.RateLimit, opts.RateDelta)
	t.secrets = newSecrets(&opts)
	t.localName = opts.LocalName
	if t.localName == "" {
		t.localName = hostname()
	}
	t.tlsConfig = &tls.Config{}
	if opts.TLS != nil {
		t.tlsConfig = opts.TLS.Clone()
	}
	if t.tlsConfig.ServerName == "" && opts.Network == "tcp" {
		if host, _, err := net.SplitHostPort(opts.Address); err == nil {
			t.tlsConfig.ServerName = host
		}
	}
	return t
}

func setDefaults(o *Options) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ConnectTimeout, 2*time.Minute)
	def(&o.GreetingTimeout, 30*time.Second)
	def(&o.CommandTimeout, 5*time.Minute)
	def(&o.DataTimeout, 10*time.Minute)
	def(&o.IdleTimeout, 30*time.Second)
	def(&o.IdleCheck, 5*time.Second)
	def(&o.RateDelta, time.Second)
	def(&o.DNSTimeout, 30*time.Second)
	if o.Network == "" {
		o.Network = "tcp"
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 5
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 100
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		o.Dial = localDialer(o.LocalAddress)
	}
	if o.LookupHost == nil {
		o.LookupHost = net.DefaultResolver.LookupHost
	}
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}
