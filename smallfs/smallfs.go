// Package smallfs is for tests: it mounts a small file system and fills
// it, so that code can be tested against a real "no space left on device"
// (ENOSPC) rather than a fake one. Mounting needs root; without it, or
// where mounting is not allowed, the test is skipped.
package smallfs

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size (mount's syntax: "2m") on a new directory
// and returns it; it is unmounted when the test ends.
func Mount(t testing.TB, size string) string {
	t.Helper()
	// Under tests/run.sh (CI, as root) a test that cannot have its small
	// file system fails; elsewhere it is skipped.
	skip := t.Skipf
	if os.Getenv("RELAYQ_REAL_PEERS") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("mounting a small file system needs root")
	}
	// Not t.TempDir(): its paths can be too long for the Unix sockets a
	// test may put there.
	dir, err := os.MkdirTemp("", "rqfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		skip("cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes a file at path until the file system holding it has no
// block left.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for size := len(chunk); size > 0; {
		_, err := f.Write(chunk[:size])
		switch {
		case errors.Is(err, syscall.ENOSPC):
			size /= 2 // top up the last few blocks
		case err != nil:
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}
