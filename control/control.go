package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"relayq/acceptretry"
	"relayq/conncap"
	"relayq/queue"
)

// Operations a Request may name. The listings leave out the attempt
// history and the dead letters' copies of the message record, to stay
// small; show has them.
const (
	OpQueueList    = "queue list"    // a page: Limit, After; State, Rcpt and OlderThan filter
	OpQueueShow    = "queue show"    // IDs[0]; Body adds the message
	OpQueueStatus  = "queue status"  // IDs[0]: queued, dead letter and the record kept after it left (Lookup)
	OpQueueRetry   = "queue retry"   // IDs, or All
	OpQueueHold    = "queue hold"    // IDs
	OpQueueRelease = "queue release" // IDs
	OpQueueDelete  = "queue delete"  // IDs
	OpQueueExpire  = "queue expire"  // IDs
	OpDeadList     = "dead list"     // a page: Limit, After; Rcpt and OlderThan filter
	OpDeadShow     = "dead show"     // IDs[0]; Body adds the message
	OpDeadRequeue  = "dead requeue"  // IDs, or All; Class narrows to recipients whose last reply is in it
	OpDeadPurge    = "dead purge"    // IDs, or All, or those that died OlderThan ago (with All or alone)
	OpStatus       = "status"
	// OpMailq is the listing Postfix's mailq shows any user (MailqView),
	// and the only request the mailq socket answers; a page, as
	// OpQueueList.
	OpMailq  = "mailq"
	OpReload = "reload" // re-read the configuration file (as SIGHUP does) and say whether it was taken
	// OpCompact rewrites the queue file without its free pages while the
	// daemon runs (queue.Queue.Compact): `relayq compact` asks for it.
	OpCompact = "compact"
	// OpBackup writes a copy of the queue file (queue.Queue.Backup) into
	// the file whose descriptor comes with the request (CallWithFile):
	// `relayq backup` creates the file, so it lands wherever the caller
	// may write, with the caller's owner.
	OpBackup = "backup"
)

// Request is what a client asks.
type Request struct {
	Op        string        `json:"op"`
	IDs       []string      `json:"ids,omitempty"`
	All       bool          `json:"all,omitempty"`
	State     string        `json:"state,omitempty"`
	Class     string        `json:"class,omitempty"`
	OlderThan time.Duration `json:"older_than,omitempty"`
	Body      bool          `json:"body,omitempty"`
	// Limit and After select a page of a listing: at most Limit items
	// (MaxPage when 0 or more), those whose ID sorts after After.
	Limit int    `json:"limit,omitempty"`
	After string `json:"after,omitempty"`
	// Rcpt keeps, in a listing, the messages with a recipient (a pending
	// one for mailq) that contains it, or that matches it when it holds
	// a glob character (* ? [), case aside.
	Rcpt string `json:"rcpt,omitempty"`
}

// MaxPage is the most items one answer to a listing holds: a client
// pages through a larger listing with After (Response.Next), so that
// neither side ever holds a whole large queue.
const MaxPage = 1000

// Response is the daemon's answer. Error is set when the request failed
// as a whole, and Code then says why in a word a client can test (one of
// the Code constants).
type Response struct {
	Error    string              `json:"error,omitempty"`
	Code     string              `json:"code,omitempty"`
	Messages []*queue.Message    `json:"messages,omitempty"`
	Dead     []*queue.DeadLetter `json:"dead,omitempty"`
	// Results says, for an operation on IDs, what it did to each.
	Results []Result `json:"results,omitempty"`
	// Message and DeadLetter answer show; either may be absent (a message
	// some of whose recipients died has both).
	Message    *queue.Message    `json:"message,omitempty"`
	DeadLetter *queue.DeadLetter `json:"dead_letter,omitempty"`
	Body       []byte            `json:"body,omitempty"`
	Status     *Status           `json:"status,omitempty"`
	Purged     int               `json:"purged,omitempty"`
	// Due answers `queue retry --all` (relayq flush): how many messages
	// are due now. It names none: at a million queued, a list of every ID
	// was the larger part of the call.
	Due int `json:"due,omitempty"`
	// Lookup answers queue status.
	Lookup *queue.Lookup `json:"lookup,omitempty"`
	// Compacted answers compact.
	Compacted *queue.CompactLive `json:"compacted,omitempty"`
	// Backup answers backup.
	Backup *queue.BackupResult `json:"backup,omitempty"`
	// Next, in the answer to a listing, is the After of the next page;
	// "" when the listing is over. Total is how many messages (dead
	// letters for dead list) the store holds, filters aside, and
	// TotalBytes their size (mailq's footer).
	Next       string `json:"next,omitempty"`
	Total      int    `json:"total,omitempty"`
	TotalBytes int64  `json:"total_bytes,omitempty"`
}

// ErrNotRunning is returned by Call when nothing answers on the socket.
var ErrNotRunning = errors.New("control: relayq serve is not running")

// ErrSocketInUse is returned by Listen when another relayq serve answers
// on the socket: it is left alone.
var ErrSocketInUse = errors.New("another relayq serve is answering on it")

// ErrDenied is returned by Call when this user may not connect to the
// socket at all: its mode keeps out everyone but root, the daemon's user
// (and the admin group, when there is one).
var ErrDenied = errors.New("control: permission denied")

// Server answers requests on the control socket.
type Server struct {
	ln      net.Listener
	mailqLn net.Listener // nil without Options.MailqSocket
	closing atomic.Bool
	q       *queue.Queue
	log     *slog.Logger
	wg      sync.WaitGroup
	allow   func(peer) bool // see auth.go
	started time.Time       // for status's uptime
	relays  func() []RelayStatus
	limits  func() []LimitStatus
	memory  func() (int64, int64)
	reload  func() error
	flush   func()
}

// Listen creates the control socket at path (replacing a stale one) with
// mode 0600 and starts answering root and the daemon's own user.
func Listen(path string, q *queue.Queue, log *slog.Logger) (*Server, error) {
	return ListenWith(Options{Socket: path, Queue: q, Logger: log, AdminGID: -1})
}

// Options configures ListenWith.
type Options struct {
	Socket string
	// MailqSocket, when set, is a second socket, mode 0666, on which any
	// local user may ask for OpMailq and nothing else.
	MailqSocket string
	Queue       *queue.Queue
	Logger      *slog.Logger
	// AdminGID is a group whose members may use the socket besides root
	// and the daemon's user (auth.go); the socket then has that group and
	// mode 0660. -1 for none: mode 0600.
	AdminGID int
	// Relays reports each relay's state for status; it must only read,
	// and be safe to call from any goroutine. nil leaves the relays out.
	Relays func() []RelayStatus
	// Limits reports what each submitter used of its [limits] for status,
	// under the same rules as Relays. nil leaves the limits out.
	Limits func() []LimitStatus
	// Memory reports intake's message bodies in flight and its budget
	// (0 when none), under the same rules. nil leaves them out.
	Memory func() (inFlight, budget int64)
	// Reload re-reads the configuration for OpReload and returns why the
	// new one was refused; nil answers OpReload with CodeBadRequest.
	Reload func() error
	// Flush runs before `queue retry --all` (`relayq flush`) makes every
	// message due: delivery ends every relay's pause there, so that a
	// relay that is back gets the mail at once. nil: nothing runs.
	Flush func()
}

// ListenWith is Listen with an admin group.
func ListenWith(opts Options) (*Server, error) {
	a := admins{self: os.Getuid(), gid: opts.AdminGID, groups: peerGroups}
	s, err := listen(opts, a.allow)
	if err != nil || opts.AdminGID < 0 {
		return s, err
	}
	if err := os.Chown(opts.Socket, -1, opts.AdminGID); err != nil {
		s.Close()
		return nil, fmt.Errorf("control: give %s to the admin group %d: %w", opts.Socket, opts.AdminGID, err)
	}
	if err := os.Chmod(opts.Socket, 0o660); err != nil {
		s.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", opts.Socket, err)
	}
	return s, nil
}

func listen(opts Options, allow func(peer) bool) (*Server, error) {
	path := opts.Socket
	if err := removeStale(path); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", path, err)
	}
	// A shortage of descriptors must not end the accept loop: the socket
	// would be dead until a restart.
	ln = acceptretry.Wrap(ln, opts.Logger)
	s := &Server{ln: ln, q: opts.Queue, log: opts.Logger, allow: allow, started: time.Now(), relays: opts.Relays, limits: opts.Limits, memory: opts.Memory, reload: opts.Reload, flush: opts.Flush}
	if opts.MailqSocket != "" {
		mailqLn, err := listenMailq(opts.MailqSocket)
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.mailqLn = conncap.New(acceptretry.Wrap(mailqLn, opts.Logger), mailqMaxConns, mailqMaxConnsPerUser, replyBusy)
		s.wg.Add(1)
		go s.serve(s.mailqLn, true)
	}
	s.wg.Add(1)
	go s.serve(ln, false)
	return s, nil
}

// listenMailq creates the socket that answers mailq for everybody.
func listenMailq(path string) (net.Listener, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", path, err)
	}
	return ln, nil
}

// removeStale deletes a socket file nobody answers on, and refuses to touch
// one a live daemon is using.
func removeStale(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control: %s: %w", path, ErrSocketInUse)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("control: remove stale socket: %w", err)
	}
	return nil
}

// Close stops answering and removes the socket.
func (s *Server) Close() error {
	s.closing.Store(true)
	err := s.ln.Close()
	if s.mailqLn != nil {
		err = errors.Join(err, s.mailqLn.Close())
	}
	s.wg.Wait()
	return err
}

// serve answers the connections of ln; on the mailq socket (public) only
// OpMailq, for anyone.
func (s *Server) serve(ln net.Listener, public bool) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !s.closing.Load() {
				s.log.Error("control: the socket stopped answering", "socket", ln.Addr().String(), "err", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c, public)
		}()
	}
}

// maxRequest bounds what a client may send; requests are a few bytes.
const maxRequest = 64 << 10

// The mailq socket is open to every local user, so its connections are
// capped (conncap), in all and per uid, and each gets publicTimeout for
// its request and answer (a page of the listing takes milliseconds): no
// user can hold the daemon's descriptors or goroutines with connections
// that send nothing.
const (
	mailqMaxConns        = 64
	mailqMaxConnsPerUser = 8
	publicTimeout        = 10 * time.Second
)

// replyBusy answers a connection over the mailq socket's caps.
const replyBusy = `{"error":"too many connections to the mailq socket, try again","code":"` + CodeBusy + `"}` + "\n"

func (s *Server) handle(c net.Conn, public bool) {
	defer c.Close()
	timeout := time.Minute
	if public {
		timeout = publicTimeout
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	// The request is read before the peer is judged, so that a refused
	// client reads its answer instead of failing to send (broken pipe).
	// On the control socket a request may come with a file (passed.go);
	// on the public one, the kernel drops any.
	var in io.Reader = c
	var file *os.File
	if !public {
		in, file = readPassed(c)
		if file != nil {
			defer file.Close()
		}
	}
	var req Request
	decodeErr := json.NewDecoder(io.LimitReader(in, maxRequest)).Decode(&req)
	p, err := peerOf(c)
	// On the mailq socket anyone may list the queue as mailq shows it, and
	// do nothing else.
	allowed := err == nil && ((public && (decodeErr != nil || req.Op == OpMailq)) || (!public && s.allow(p)))
	if !allowed {
		s.log.Warn("control: refused a client", "uid", p.uid, "pid", p.pid, "err", err)
		_ = json.NewEncoder(c).Encode(Response{Error: "permission denied", Code: CodeDenied})
		return
	}
	if decodeErr != nil {
		_ = json.NewEncoder(c).Encode(Response{Error: "bad request: " + decodeErr.Error(), Code: CodeBadRequest})
		return
	}
	if req.Op == OpBackup {
		// A copy takes as long as the disks need; the answer then gets
		// a minute again.
		_ = c.SetDeadline(time.Time{})
		resp := s.backup(file, p.uid)
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		_ = json.NewEncoder(c).Encode(resp)
		return
	}
	_ = json.NewEncoder(c).Encode(s.answer(req, p.uid))
}

// answer runs req for the peer uid (ops.go has the operations).
func (s *Server) answer(req Request, uid int) Response {
	switch req.Op {
	case OpQueueList:
		return s.queueList(req)
	case OpDeadList:
		return s.deadList(req)
	case OpQueueShow, OpDeadShow:
		return s.show(req)
	case OpQueueStatus:
		return s.lookup(req) // lookup.go
	case OpStatus:
		return s.status()
	case OpMailq:
		return s.mailq(req)
	case OpReload:
		return s.reloadConfig(uid)
	case OpCompact:
		return s.compact(uid)
	case OpQueueRetry, OpQueueHold, OpQueueRelease, OpQueueDelete, OpQueueExpire, OpDeadRequeue, OpDeadPurge:
		return s.change(req, uid)
	default:
		return Response{Error: fmt.Sprintf("unknown operation %q", req.Op), Code: CodeBadRequest}
	}
}

// reloadConfig answers OpReload: Error is why the new configuration was
// refused (the old one stays in force), with CodeConfig.
func (s *Server) reloadConfig(uid int) Response {
	if s.reload == nil {
		return Response{Error: "this daemon cannot reload its configuration", Code: CodeBadRequest}
	}
	s.log.Info("control: configuration reload asked for", "uid", uid)
	if err := s.reload(); err != nil {
		return Response{Error: err.Error(), Code: CodeConfig}
	}
	return Response{}
}

// compact answers OpCompact.
func (s *Server) compact(uid int) Response {
	s.log.Info("control: compaction of the queue file asked for", "uid", uid)
	res, err := s.q.Compact()
	if err != nil {
		code := CodeInternal
		if errors.Is(err, queue.ErrDamaged) {
			code = CodeDamaged
		}
		return Response{Error: err.Error(), Code: code}
	}
	return Response{Compacted: &res} // the queue logged it
}

// backup answers OpBackup, writing into file.
func (s *Server) backup(file *os.File, uid int) Response {
	if file == nil {
		return Response{Error: "backup: no file came with the request", Code: CodeBadRequest}
	}
	s.log.Info("control: backup of the queue file asked for", "uid", uid)
	res, err := s.q.Backup(file)
	if err != nil {
		code := CodeInternal
		switch {
		case errors.Is(err, queue.ErrFull):
			code = CodeFull
		case errors.Is(err, queue.ErrNotRegular):
			code = CodeBadRequest
		}
		s.log.Warn("backup of the queue file failed", "uid", uid, "err", err)
		return Response{Error: err.Error(), Code: code}
	}
	s.log.Info("backed up the queue file", "uid", uid, "size", res.Size, "messages", res.Messages,
		"dead", res.Dead, "took", res.Took.Round(time.Millisecond))
	return Response{Backup: &res}
}

// Call sends req to the daemon listening on path and returns its answer.
func Call(ctx context.Context, path string, req Request) (*Response, error) {
	return call(ctx, path, req, nil)
}

// CallWithFile is Call with f's descriptor passed along with the request
// (SCM_RIGHTS), for OpBackup.
func CallWithFile(ctx context.Context, path string, req Request, f *os.File) (*Response, error) {
	return call(ctx, path, req, f)
}

func call(ctx context.Context, path string, req Request, f *os.File) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w: this user may not use the control socket %s", ErrDenied, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (control socket %s: %v)", ErrNotRunning, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	sendErr := send(c, req, f)
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if sendErr != nil {
			return nil, fmt.Errorf("control: send: %w", sendErr)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, fmt.Errorf("control: relayq serve closed the connection without an answer (it stopped, or was killed): %w", err)
		}
		return nil, fmt.Errorf("control: read answer: %w", err)
	}
	// A refusal may come before the request is read (conncap), and the
	// request's write then fails: the answer says why.
	if resp.Error != "" {
		return &resp, fmt.Errorf("control: %s", resp.Error)
	}
	return &resp, nil
}
