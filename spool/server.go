package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/acceptretry"
	"relayq/conncap"
	"relayq/queue"
)

// Defaults for the zero values of Options.
const (
	defaultSocketMode   os.FileMode = 0o666
	defaultReadTimeout              = 10 * time.Minute
	defaultWriteTimeout             = time.Minute
	// defaultMaxLineLength bounds a line, in commands and in DATA. go-smtp's
	// own default (2000) would refuse single-line JSON or HTML from cron with
	// a permanent 554 (reliability.md §4.2); these listeners are local, so a
	// large bound costs little.
	defaultMaxLineLength = 1 << 20
)

// Options configures a Server.
type Options struct {
	// Queue receives every accepted message. Nil starts the server before
	// the queue is open: it answers MAIL with 451 4.3.0 "relayq is
	// starting" until Ready hands it the queue (starting.go).
	Queue *queue.Queue
	// Maildrop is the maildrop directory (maildrop.go). While the queue is
	// not open (no Queue, before Ready), a session that reaches the end of
	// DATA has its message written there and gets its 250 once the file is
	// on disk; the daemon's Maildrop import queues it once the queue is
	// open (starting.go). "" answers MAIL with 451 4.3.0 until Ready.
	Maildrop string
	// QueuePath and MinFree are the queue file and [queue] min_free: while
	// the queue is not open, a message is refused with 452 4.3.1 when the
	// queue's file system has less than MinFree bytes free (MaildropRoom),
	// as sendmail's fallback refuses it. 0 checks nothing.
	QueuePath string
	MinFree   int64
	// Socket is the path of the submission Unix socket; "" for none.
	Socket string
	// SocketMode is the socket's permission bits; 0 means 0666 (every local
	// user may submit, as with Postfix's sendmail).
	SocketMode os.FileMode
	// SocketGID is the group given to the socket; -1 leaves it as created.
	SocketGID int
	// Listen are extra TCP addresses ("127.0.0.1:25"; ":0" picks a port). The
	// config decides that they are loopback addresses; the server takes them
	// as given.
	Listen []string
	// Hostname is the domain in the greeting; "" means os.Hostname().
	Hostname string
	// MaxMessageSize is advertised with SIZE; a bigger message gets
	// 552 5.3.4. 0 means no limit.
	MaxMessageSize int64
	// MaxRecipients per transaction; the next RCPT gets 452 4.5.3. 0 means
	// no limit.
	MaxRecipients int
	// MaxLineLength bounds a line in bytes; 0 means 1 MiB. A longer line in
	// DATA gets 552 5.3.4 and the connection is closed.
	MaxLineLength int
	// ReadTimeout bounds the wait for each command and for the whole of DATA
	// (go-smtp does not renew it inside DATA); 0 means 10 minutes. The
	// daemon sets it from [submission] read_timeout.
	// WriteTimeout bounds each reply; 0 means 1 minute.
	ReadTimeout, WriteTimeout time.Duration
	// Logger receives a line per accepted message and the causes of refusals;
	// nil means slog.Default().
	Logger *slog.Logger
	// Limits caps what each submitter may send (limits.go); the zero
	// value limits nothing.
	Limits Limits
	// MaxConnections caps the connections open at once on all listeners
	// together, MaxConnectionsPerUser those of one uid, on the socket and
	// the TCP listeners together (a TCP client's uid is the owner of its
	// socket; one whose owner cannot be looked up counts under its address,
	// every loopback address as one); more get 421 4.7.0 (caps.go). 0
	// means no cap.
	MaxConnections, MaxConnectionsPerUser int
	// ReserveDescriptors is how many descriptors under RLIMIT_NOFILE intake
	// leaves to the rest of the daemon: a connection that leaves fewer free
	// gets 421 4.7.0. 0 means 64.
	ReserveDescriptors int
	// IdleTimeout bounds the wait for each command outside a transaction
	// (before MAIL FROM, and after the message); 0 means ReadTimeout.
	IdleTimeout time.Duration
	// MaxMemory caps the bytes of message body that sessions hold at once
	// (memory.go); raised to one message of MaxMessageSize if less. One
	// submitter may hold half of it (or one such message). A message that
	// finds no room within MemoryWait gets 452 4.3.1. 0 means no cap.
	MaxMemory int64
	// MemoryWait is how long, in all, a message waits for room in
	// MaxMemory before it is refused; 0 means 5 seconds.
	MemoryWait time.Duration
	// Rewriting maps recipients at RCPT and rewrites the sender and the
	// header before the message is queued (rewriting.go); the zero value
	// changes nothing.
	Rewriting Rewriting
	// Inherited are listeners opened by someone else (systemd's socket
	// activation), keyed by the Socket path or the Listen address they
	// stand for; Start serves them instead of listening there itself. The
	// socket file of an inherited listener is left as it is: its mode and
	// group are the opener's to set (the .socket unit's SocketMode= and
	// SocketGroup=), and it is not removed at Shutdown, so that clients
	// wait in its backlog while relayq restarts. Nil means none.
	Inherited map[string]net.Listener
	// Metrics counts accepted messages and refusals (metrics.go), the
	// maildrop's imports too when it has this Server as its Intake; nil
	// counts nothing.
	Metrics *Metrics
}

// Server is the SMTP intake on the Unix socket and the TCP listeners.
type Server struct {
	opts      Options
	log       *slog.Logger
	srv       *smtp.Server
	q         atomic.Pointer[queue.Queue] // nil until Ready (starting.go)
	limits    atomic.Pointer[limiter]     // nil: no limits; SetLimits replaces it
	limitsMu  sync.Mutex                  // SetLimits and Ready
	limitsSet Limits                      // the last Limits set; guarded by limitsMu
	rewriting atomic.Pointer[Rewriting]   // never nil; SetRewriting replaces it
	mem       *memBudget                  // nil: no budget (memory.go)
	memLog    logEvery                    // refusals for lack of memory, for the log

	// putCtx is handed to queue.Put; it is cancelled only when Shutdown
	// gives up waiting.
	putCtx    context.Context
	cancelPut context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*conn]struct{}
	perKey    map[string]int // open connections per cap key (caps.go)
	refusals  logEvery       // connections refused over a cap, for the log
	closing   bool
	held      []net.Listener // inherited listeners not served until Ready (starting.go)
	serving   sync.WaitGroup // Serve goroutines
	receiving sync.WaitGroup // sessions inside Data (Add only while !closing)
	stopped   chan struct{}  // closed when the first Shutdown returns
	stopErr   error

	// tcpOwner looks up who owns a TCP client's socket (conncap.TCPOwner);
	// tests replace it before Start.
	tcpOwner       func(client, server net.Addr) (uid int, err error)
	tcpOwnerFailed atomic.Bool // a lookup could not be made; logged once (caps.go)
}

// NewServer returns a server that is not listening yet; see Start.
func NewServer(opts Options) *Server {
	if opts.SocketMode == 0 {
		opts.SocketMode = defaultSocketMode
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
		if opts.Hostname == "" {
			opts.Hostname = "localhost"
		}
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = defaultMaxLineLength
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = defaultReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReserveDescriptors <= 0 {
		opts.ReserveDescriptors = defaultReserveDescriptors
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		conns:    make(map[*conn]struct{}),
		perKey:   make(map[string]int),
		refusals: logEvery{interval: refusalLogInterval},
		mem:      newMemBudget(opts.MaxMemory, opts.MaxMessageSize, opts.MemoryWait),
		memLog:   logEvery{interval: refusalLogInterval},
		stopped:  make(chan struct{}),
		tcpOwner: conncap.TCPOwner,
	}
	s.putCtx, s.cancelPut = context.WithCancel(context.Background())
	s.limitsSet = opts.Limits
	s.limits.Store(newLimiter(opts.Limits, opts.Queue, opts.Logger))
	if opts.Queue != nil {
		s.q.Store(opts.Queue)
	}
	s.rewriting.Store(&opts.Rewriting)

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageSize
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = opts.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // RET, ENVID, NOTIFY, ORCPT: kept and passed on (dsn.go)
	srv.ErrorLog = errorLog{opts.Logger}
	s.srv = srv
	return s
}

// Start listens on the socket and every Listen address and serves each in
// its own goroutine. A socket file left by a dead daemon is removed; one
// that a live daemon answers on is an error, and so is a file there that is
// not a socket. If any listener fails, none is left open.
func (s *Server) Start() error {
	if s.opts.Socket == "" && len(s.opts.Listen) == 0 {
		return errors.New("spool: start: no socket and no listen address")
	}
	var ls []net.Listener
	inherited := map[net.Listener]bool{} // of ls, those systemd passed
	fail := func(err error) error {
		for _, l := range ls {
			l.Close()
		}
		return err
	}
	if s.opts.Socket != "" {
		l, ok := s.opts.Inherited[s.opts.Socket]
		if !ok {
			var err error
			if l, err = listenUnix(s.opts.Socket, s.opts.SocketMode, s.opts.SocketGID); err != nil {
				return fail(err)
			}
		}
		ls = append(ls, &listener{Listener: acceptretry.Wrap(l, s.log), srv: s, via: viaSocket})
		inherited[ls[len(ls)-1]] = ok
	}
	for _, addr := range s.opts.Listen {
		l, ok := s.opts.Inherited[addr]
		if !ok {
			var err error
			if l, err = net.Listen("tcp", addr); err != nil {
				return fail(fmt.Errorf("spool: listen on %s: %w", addr, err))
			}
		}
		ls = append(ls, &listener{Listener: acceptretry.Wrap(l, s.log), srv: s, via: viaTCP})
		inherited[ls[len(ls)-1]] = ok
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return fail(errors.New("spool: start: server is shut down"))
	}
	s.listeners = append(s.listeners, ls...)
	for _, l := range ls {
		if inherited[l] && s.starting() && s.opts.Maildrop == "" {
			s.held = append(s.held, l) // starting.go: served at Ready
			continue
		}
		s.serveLocked(l)
	}
	return nil
}

// serveLocked serves l in a goroutine of its own; s.mu is held.
func (s *Server) serveLocked(l net.Listener) {
	s.serving.Add(1)
	go s.serve(l)
	s.log.Info("accepting mail", "listen", l.Addr().String())
}

func (s *Server) serve(l net.Listener) {
	defer s.serving.Done()
	err := s.srv.Serve(l)
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if err != nil && !closing {
		s.log.Error("smtp listener failed", "listen", l.Addr().String(), "err", err)
	}
}

// LimitUsage reports, for `relayq status`, what each submitter has used of
// its [limits]: every key with a rule of its own or anything counted, by
// key. Nil when no limit is set.
func (s *Server) LimitUsage() []LimitUsage { return s.limits.Load().usage() }

// MemoryInFlight returns, for `relayq status`, the bytes of message body
// that sessions hold now and the budget (Options.MaxMemory as raised); 0,
// 0 without a budget.
func (s *Server) MemoryInFlight() (used, budget int64) { return s.mem.inFlight() }

// SetLimits replaces Options.Limits (a configuration reload). What each
// submitter sent in the last hour and its refusals are carried over, so
// that a reload does not reset anyone's count; sessions past MAIL FROM
// finish under the limits they started with.
func (s *Server) SetLimits(l Limits) {
	s.limitsMu.Lock()
	defer s.limitsMu.Unlock()
	s.limitsSet = l
	s.limits.Store(newLimiter(l, s.queue(), s.log).carryFrom(s.limits.Load()))
}

// SetRewriting replaces Options.Rewriting (a configuration reload): each
// RCPT and each message from then on uses the new rules, and so does the
// maildrop import of a Maildrop whose Intake is s.
func (s *Server) SetRewriting(w Rewriting) { s.rewriting.Store(&w) }

// Addrs returns the addresses actually listened on: the socket first (if
// any), then the TCP listeners in the order of Options.Listen.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	addrs := make([]net.Addr, 0, len(s.listeners))
	for _, l := range s.listeners {
		addrs = append(addrs, l.Addr())
	}
	return addrs
}

// Shutdown stops accepting connections, closes the idle ones (their
// clients see the connection close, nothing was acknowledged), and lets
// sessions that are receiving DATA finish and get their reply. If ctx ends
// first, the remaining connections are closed and ctx's error returned; a
// Put in progress then fails and its client gets no 250. A client that got
// its 354 just before Shutdown, before go-smtp handed the data over, gets
// 421 4.3.2. No Put is running once Shutdown returns, so the queue may be
// closed. Later calls wait for the first one and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		select {
		case <-s.stopped:
			return s.stopErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.closing = true
	for c := range s.conns {
		if !c.inData {
			c.stopReading()
		}
	}
	ls := s.listeners
	s.mu.Unlock()

	// Close the listeners ourselves (Serve may not have registered one with
	// go-smtp yet) and wait for every Serve loop to return before calling
	// go-smtp's Shutdown: Serve adds accepted connections to the WaitGroup
	// that Shutdown waits on, and an Add racing that Wait is a data race.
	for _, l := range ls {
		l.Close()
	}
	s.serving.Wait()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if ctx.Err() != nil {
		s.cancelPut()
		s.mu.Lock()
		for c := range s.conns {
			c.Conn.Close()
		}
		s.mu.Unlock()
		err = ctx.Err()
	}
	// No Put is left running once Shutdown returns, so the caller may close
	// the queue.
	s.receiving.Wait()
	s.cancelPut()
	if s.opts.Socket != "" {
		s.log.Info("stopped accepting mail", "socket", s.opts.Socket)
	}
	s.stopErr = err
	close(s.stopped)
	return err
}

// listenUnix listens on a Unix socket at path, replacing a stale socket file.
func listenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("spool: socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("spool: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("spool: socket %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("spool: socket %s: set group %d: %w", path, gid, err)
		}
	}
	return l, nil
}

// removeStaleSocket removes a socket file nobody answers on. It refuses to
// touch anything else: another file, or a socket a live daemon holds.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("spool: socket %s: a file that is not a socket is in the way", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("spool: socket %s: %w", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("spool: socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove stale socket: %w", err)
	}
	return nil
}

// errorLog hands go-smtp's internal messages (connection errors, panics) to
// slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.log.Warn("smtp server", "detail", fmt.Sprintf(format, v...))
}

func (e errorLog) Println(v ...any) {
	e.log.Warn("smtp server", "detail", fmt.Sprint(v...))
}
