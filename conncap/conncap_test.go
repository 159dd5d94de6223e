package conncap

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCapsPerCallerAndInAll: on a Unix socket, a caller's connections
// past perCaller get the refusal and are closed; closing one lets the
// next in; the peer's uid comes with each connection.
func TestCapsPerCallerAndInAll(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	inner, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, 10, 3, "busy\n")
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var served []net.Conn
	for range 3 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := <-accepted
		served = append(served, got)
		if uid := got.(*Conn).UID; uid != os.Getuid() {
			t.Errorf("peer uid %d, want %d", uid, os.Getuid())
		}
	}
	refused := func() string {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := refused(); got != "busy\n" {
		t.Errorf("a fourth connection read %q, want the refusal and EOF", got)
	}
	if n := l.Open(); n != 3 {
		t.Errorf("%d open, want 3", n)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the cap reached the server: %v", c.RemoteAddr())
	default:
	}
	// The server closes one: a new connection gets in.
	served[0].Close()
	served[0].Close() // a second Close frees nothing more
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection admitted after one closed")
	}
	if n := l.Open(); n != 3 {
		t.Errorf("%d open, want 3", n)
	}
	if got := refused(); got != "busy\n" {
		t.Errorf("over the cap again: read %q", got)
	}
}
