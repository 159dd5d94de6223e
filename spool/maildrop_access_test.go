package spool

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestMaildropMode(t *testing.T) {
	tests := []struct {
		socket, want os.FileMode
	}{
		{0o666, os.ModeSticky | 0o733},
		{0o660, os.ModeSticky | 0o730},
		{0o620, os.ModeSticky | 0o730},
		{0o600, os.ModeSticky | 0o700},
		{0o606, os.ModeSticky | 0o703},
		{0o644, os.ModeSticky | 0o700}, // nobody else may write to the socket
	}
	for _, tt := range tests {
		if got := MaildropMode(tt.socket); got != tt.want {
			t.Errorf("MaildropMode(%04o) = %v, want %v", tt.socket, got, tt.want)
		}
	}
}

// TestEnsureMaildropFor: the directory gets the socket's group and the
// mode that follows from the socket's, also when it existed with looser
// permissions.
func TestEnsureMaildropFor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "maildrop")
	if err := EnsureMaildrop(dir); err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid() // a group this user may give away files to
	if err := EnsureMaildropFor(dir, 0o660, gid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := os.ModeDir | os.ModeSticky | 0o730; fi.Mode() != want {
		t.Errorf("maildrop mode %v, want %v", fi.Mode(), want)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
		t.Errorf("maildrop group %d, want %d", st.Gid, gid)
	}
}
