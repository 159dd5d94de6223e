package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"relayq/queue"
)

// Operations a Request may name.
const (
	OpQueueList = "queue list"
	OpDeadList  = "dead list"
)

// Request is what a client asks.
type Request struct {
	Op string `json:"op"`
}

// Response is the daemon's answer. Error is set when the request failed.
type Response struct {
	Error    string              `json:"error,omitempty"`
	Messages []*queue.Message    `json:"messages,omitempty"`
	Dead     []*queue.DeadLetter `json:"dead,omitempty"`
}

// ErrNotRunning is returned by Call when nothing answers on the socket.
var ErrNotRunning = errors.New("control: relayq serve is not running")

// Server answers requests on the control socket.
type Server struct {
	ln    net.Listener
	q     *queue.Queue
	log   *slog.Logger
	wg    sync.WaitGroup
	allow func(uid int) bool
}

// Listen creates the control socket at path (replacing a stale one) with
// mode 0600 and starts answering.
func Listen(path string, q *queue.Queue, log *slog.Logger) (*Server, error) {
	self := os.Getuid()
	return listen(path, q, log, func(uid int) bool { return uid == 0 || uid == self })
}

func listen(path string, q *queue.Queue, log *slog.Logger, allow func(uid int) bool) (*Server, error) {
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
	s := &Server{ln: ln, q: q, log: log, allow: allow}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// removeStale deletes a socket file nobody answers on, and refuses to touch
// one a live daemon is using.
func removeStale(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control: %s: another relayq serve is answering on it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("control: remove stale socket: %w", err)
	}
	return nil
}

// Close stops answering and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// maxRequest bounds what a client may send; requests are a few bytes.
const maxRequest = 64 << 10

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	// The request is read before the peer is judged, so that a refused
	// client reads its answer instead of failing to send (broken pipe).
	var req Request
	decodeErr := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req)
	uid, err := peerUID(c)
	if err != nil || !s.allow(uid) {
		s.log.Warn("control: refused a client", "uid", uid, "err", err)
		_ = json.NewEncoder(c).Encode(Response{Error: "permission denied"})
		return
	}
	if decodeErr != nil {
		_ = json.NewEncoder(c).Encode(Response{Error: "bad request: " + decodeErr.Error()})
		return
	}
	_ = json.NewEncoder(c).Encode(s.answer(req))
}

func (s *Server) answer(req Request) Response {
	switch req.Op {
	case OpQueueList:
		msgs, err := s.q.List()
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Messages: msgs}
	case OpDeadList:
		dead, err := s.q.ListDead()
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Dead: dead}
	default:
		return Response{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
}

func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// Call sends req to the daemon listening on path and returns its answer.
func Call(ctx context.Context, path string, req Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w (control socket %s: %v)", ErrNotRunning, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("control: send: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control: read answer: %w", err)
	}
	if resp.Error != "" {
		return &resp, fmt.Errorf("control: %s", resp.Error)
	}
	return &resp, nil
}
