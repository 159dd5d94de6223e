package spool

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A listener handed over by systemd's socket activation is served as it
// is: its socket file keeps the mode its opener gave it, and it outlives
// Shutdown, so that the clients of the next relayq wait in its backlog.
func TestInheritedListeners(t *testing.T) {
	path := filepath.Join(socketDir(t), "submit.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ul.(*net.UnixListener).SetUnlinkOnClose(false) // as systemd's would be
	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := tl.Addr().String()
	s := startServer(t, Options{Socket: path, SocketMode: 0o660, Listen: []string{addr},
		Inherited: map[string]net.Listener{path: ul, addr: tl}})
	for _, network := range []string{"unix", "tcp"} {
		c := newClient(t, dial(t, s, network))
		c.run(dialog(hello, transaction("Subject: hi\r\n\r\nbody\r\n.\r\n", queuedReply)))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o604 {
		t.Errorf("inherited socket: %v %v, want its mode 0604 kept", fi.Mode(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("inherited socket removed at shutdown: %v", err)
	}
}
