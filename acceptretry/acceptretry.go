// Package acceptretry keeps a listener accepting through a shortage of
// descriptors or kernel memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) and
// through a connection aborted before it was accepted: Accept waits and
// tries again, 5 ms doubling to 1 s as net/http's Server does, instead of
// returning the error and ending the caller's accept loop. It logs one line
// when a run of such failures begins and one when accepting works again,
// not one per try. The pending connections wait in the kernel's backlog
// meanwhile and are accepted once descriptors are free.
//
// Every other error (the listener closed) is returned at once. The package
// imports nothing from relayq; spool (the submission socket and the
// loopback listeners) and control (the control socket) both use it.
package acceptretry

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Backoff bounds: the first wait, doubled on every failure up to the last.
const (
	firstDelay = 5 * time.Millisecond
	maxDelay   = time.Second
)

// Listener is a net.Listener whose Accept retries the errors that pass.
type Listener struct {
	net.Listener
	log       *slog.Logger
	closed    chan struct{}
	closeOnce sync.Once
}

// Wrap returns l with retrying Accept; log (nil: slog.Default()) gets the
// line at the start and at the end of a run of failures.
func Wrap(l net.Listener, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{Listener: l, log: log, closed: make(chan struct{})}
}

// Accept waits for the next connection, retrying while the failure is one
// that passes (Retryable). A Close during the wait ends it with
// net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	var failures int
	var since time.Time
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if failures > 0 {
				l.log.Warn("accepting connections again", "listen", l.Addr().String(), "failed_tries", failures, "for", time.Since(since).Round(time.Millisecond))
			}
			return c, nil
		}
		if !Retryable(err) {
			return nil, err
		}
		if failures == 0 {
			since = time.Now()
			l.log.Error("cannot accept connections; retrying until it can (they wait in the backlog)", "listen", l.Addr().String(), "err", err)
		}
		failures++
		delay = min(max(delay*2, firstDelay), maxDelay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and ends an Accept that is waiting to retry.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Retryable reports whether an Accept error passes by itself: too many
// open files (in the process or the system), no buffer space or memory, or
// a connection the peer aborted before it was accepted.
func Retryable(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
