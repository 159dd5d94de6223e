package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMakeStateDirs: a missing directory is created 0711 (parents too);
// one that exists keeps the mode its administrator gave it.
func TestMakeStateDirs(t *testing.T) {
	root := t.TempDir()
	created := filepath.Join(root, "a", "state")
	existing := filepath.Join(root, "mine")
	if err := os.Mkdir(existing, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := makeStateDirs(filepath.Join(created, "queue.db"), filepath.Join(created, "submit.sock"), filepath.Join(existing, "control.sock")); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]os.FileMode{created: stateDirMode, existing: 0o750} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", dir, got, want)
		}
	}
}
