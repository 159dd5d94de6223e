package acceptretry

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// starve lowers this process's soft RLIMIT_NOFILE to 3 (only 0, 1 and 2
// fit), so that the next accept fails with EMFILE; the returned func puts
// it back.
func starve(t *testing.T) (restore func()) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 3
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type accepted struct {
	c   net.Conn
	err error
}

func acceptAsync(l net.Listener) <-chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ch <- accepted{c, err}
	}()
	return ch
}

// With no descriptor left, Accept waits (one log line) instead of failing;
// once descriptors are back, the connection waiting in the backlog is
// accepted (one more line). A Close while Accept waits ends it with
// net.ErrClosed.
func TestAcceptWaitsOutEMFILE(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	l := Wrap(ln, slog.New(slog.NewTextHandler(logs, nil)))
	defer l.Close()
	const failing, again = "cannot accept connections", "accepting connections again"

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	restore := starve(t)
	ch := acceptAsync(l)
	waitFor(t, "a failed accept to be logged", func() bool { return logs.count(failing) == 1 })
	time.Sleep(200 * time.Millisecond) // several retries
	restore()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("Accept: %v", a.err)
		}
		a.c.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("Accept did not return once descriptors were back")
	}
	if f, a := logs.count(failing), logs.count(again); f != 1 || a != 1 {
		t.Errorf("logged %d failing and %d recovered lines for one run of failures, want 1 and 1", f, a)
	}

	client2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client2.Close()
	restore = starve(t)
	ch = acceptAsync(l)
	waitFor(t, "the second run of failures to be logged", func() bool { return logs.count(failing) == 2 })
	l.Close()
	select {
	case a := <-ch:
		if !errors.Is(a.err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, %v; want net.ErrClosed", a.c, a.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not end a waiting Accept")
	}
	restore()
}

func TestRetryable(t *testing.T) {
	for _, err := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED,
		&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}} {
		if !Retryable(err) {
			t.Errorf("%v is not retried", err)
		}
	}
	for _, err := range []error{net.ErrClosed, syscall.EINVAL, errors.New("other")} {
		if Retryable(err) {
			t.Errorf("%v is retried", err)
		}
	}
}
