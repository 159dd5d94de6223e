package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"relayq/conncap"
	"relayq/queue"
	"relayq/spool"
)

// Defaults for the zero values of Options.
const (
	defaultSocketMode        os.FileMode = 0o666
	defaultURLTimeout                    = 10 * time.Second
	defaultMaxAttachmentSize             = 10 << 20
	defaultMaxAttachments                = 20
	defaultMaxRequestSize                = 32 << 20
	defaultMaxConnections                = 64
	readHeaderTimeout                    = 10 * time.Second
	requestTimeout                       = 2 * time.Minute
	idleTimeout                          = 30 * time.Second
)

// ErrSocketInUse is returned by Start when a live daemon answers on the
// socket.
var ErrSocketInUse = errors.New("another daemon answers on the socket")

// Access is what one listener lets callers use as attachment content.
type Access struct {
	// Files allows attachments with a path (under Options.FileRoots).
	Files bool
	// URLs allows attachments with an href.
	URLs bool
}

// Options configures a Server. Intake and Queue are required.
type Options struct {
	// Intake takes every message (spool.Server.Submit: the socket's policy).
	Intake *spool.Server
	// Queue answers status lookups and idempotency keys.
	Queue *queue.Queue
	// Socket is the API's Unix socket; "" for none. SocketMode its
	// permission bits (0 means 0666, as the submission socket), SocketGID
	// its group (-1 leaves it).
	Socket     string
	SocketMode os.FileMode
	SocketGID  int
	// Listen is a loopback TCP address; "" for none. It needs Token.
	Listen string
	// Token is the bearer token TCP callers must send.
	Token string
	// SocketAccess and TCPAccess are what each listener allows; the zero
	// value allows neither files nor URLs.
	SocketAccess, TCPAccess Access
	// FileRoots are the directories path attachments may be read from.
	FileRoots []string
	// URLTimeout bounds a whole fetch (0 means 10s); URLMaxSize one
	// fetched body (0 means MaxAttachmentSize).
	URLTimeout time.Duration
	URLMaxSize int64
	// MaxAttachmentSize bounds one attachment's bytes (0 means 10 MiB);
	// MaxAttachments their number (0 means 20); MaxRequestSize a request
	// body (0 means 32 MiB). The composed message is bounded by intake's
	// max_message_size.
	MaxAttachmentSize int64
	MaxAttachments    int
	MaxRequestSize    int64
	// MaxConnections caps the open connections on each listener (0 means
	// 64), MaxConnectionsPerCaller those of one uid on the socket or one
	// address on TCP (0 means a quarter of MaxConnections, at least 1).
	// More get 503 with Retry-After.
	MaxConnections, MaxConnectionsPerCaller int
	// DefaultFrom is the envelope sender of a message that names no from
	// (the [defaults] from address; its From header field is added by
	// intake's rewriting, Options.Rewriting of spool); "" refuses such a
	// message.
	DefaultFrom string
	// Hostname names Message-IDs; "" means os.Hostname().
	Hostname string
	Logger   *slog.Logger
	// DialAllowed decides which addresses a URL fetch may connect to;
	// nil means public unicast addresses only. A test seam.
	DialAllowed func(netip.AddrPort) bool
}

// Server is the HTTP submission API.
type Server struct {
	opts    Options
	log     *slog.Logger
	fetch   *fetcher
	keys    keyLocks
	servers []*http.Server
	wg      sync.WaitGroup
}

// via names the listener a request came on, in its context.
type viaKey struct{}

type caller struct {
	tcp  bool
	uid  int
	addr string
}

// New returns a Server that is not listening yet; see Start.
func New(opts Options) *Server {
	if opts.SocketMode == 0 {
		opts.SocketMode = defaultSocketMode
	}
	if opts.URLTimeout <= 0 {
		opts.URLTimeout = defaultURLTimeout
	}
	if opts.MaxAttachmentSize <= 0 {
		opts.MaxAttachmentSize = defaultMaxAttachmentSize
	}
	if opts.URLMaxSize <= 0 {
		opts.URLMaxSize = opts.MaxAttachmentSize
	}
	if opts.MaxAttachments <= 0 {
		opts.MaxAttachments = defaultMaxAttachments
	}
	if opts.MaxRequestSize <= 0 {
		opts.MaxRequestSize = defaultMaxRequestSize
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = defaultMaxConnections
	}
	if opts.MaxConnectionsPerCaller <= 0 {
		opts.MaxConnectionsPerCaller = max(opts.MaxConnections/4, 1)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{
		opts:  opts,
		log:   opts.Logger.With("via", "api"),
		fetch: newFetcher(opts.URLTimeout, opts.URLMaxSize, opts.DialAllowed),
	}
}

// Handler is the API's routes, for a listener of the given kind.
func (s *Server) handler(tcp bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.submit)
	mux.HandleFunc("GET /v1/messages/{id}", s.status)
	if !tcp {
		return mux
	}
	want := []byte("Bearer " + s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relayq"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required", "")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Start listens on the socket and the TCP address. A TCP address without
// a token is refused.
func (s *Server) Start() error {
	if s.opts.Intake == nil || s.opts.Queue == nil {
		return errors.New("api: start: no intake or queue")
	}
	if s.opts.Listen != "" && s.opts.Token == "" {
		return errors.New("api: start: a TCP listener needs a token")
	}
	var ls []net.Listener
	var tcps []bool
	if s.opts.Socket != "" {
		l, err := listenSocket(s.opts.Socket, s.opts.SocketMode, s.opts.SocketGID)
		if err != nil {
			return err
		}
		ls, tcps = append(ls, l), append(tcps, false)
	}
	if s.opts.Listen != "" {
		l, err := net.Listen("tcp", s.opts.Listen)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("api: listen %s: %w", s.opts.Listen, err)
		}
		ls, tcps = append(ls, l), append(tcps, true)
	}
	for i, l := range ls {
		s.serve(conncap.New(l, s.opts.MaxConnections, s.opts.MaxConnectionsPerCaller, replyBusy), tcps[i])
	}
	return nil
}

// Addr is the TCP listener's address ("" without one); for tests.
func (s *Server) Addr() string {
	for _, srv := range s.servers {
		if srv.Addr != "" {
			return srv.Addr
		}
	}
	return ""
}

// replyBusy answers a connection over a cap (conncap): it is closed at
// once, as intake answers 421 (spool caps.go), instead of waiting where it
// would hold up the accept loop.
const replyBusy = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 84\r\n\r\n" +
	`{"error": {"code": "too_many_connections", "message": "too many connections, retry"}}`

func (s *Server) serve(l net.Listener, tcp bool) {
	srv := &http.Server{
		Handler:           s.handler(tcp),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       requestTimeout,
		WriteTimeout:      requestTimeout + s.opts.URLTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			cl := caller{tcp: tcp, uid: -1, addr: c.RemoteAddr().String()}
			if cc, ok := c.(*conncap.Conn); ok && !tcp {
				cl.uid = cc.UID
			}
			return context.WithValue(ctx, viaKey{}, cl)
		},
	}
	if tcp {
		srv.Addr = l.Addr().String()
	}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api listener failed", "err", err)
		}
	}()
}

// Shutdown stops accepting, waits for requests in progress until ctx
// ends, and removes the socket file.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err, srv.Close()) // gave up waiting: close what is left
		}
	}
	s.wg.Wait()
	if s.opts.Socket != "" {
		os.Remove(s.opts.Socket)
	}
	return errors.Join(errs...)
}

// listenSocket listens on a Unix socket with mode and group set before
// anyone can connect, removing a stale socket file.
func listenSocket(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api: %s: %w", path, ErrSocketInUse)
		}
		os.Remove(path)
	}
	tmp := path + ".new"
	os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("api: listen %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return l, nil
}

// keyLocks serialises requests with the same idempotency key, so that a
// concurrent duplicate waits for the first one's commit and then sees it.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
