package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateDirMode is the mode of a directory relayq creates for its queue,
// sockets and maildrop: search but not read for others, so that local users
// reach the submission socket and the maildrop by name without listing
// anything. It matches systemd/relayq.service's StateDirectoryMode.
const stateDirMode = 0o711

// makeStateDirs creates the directory of each path that does not exist yet
// (parents too) and gives it stateDirMode whatever the umask (under
// systemd's UMask=0077 a plain mkdir would make it 0700 and lock every user
// out of the socket). Existing directories are left as the administrator
// made them.
func makeStateDirs(paths ...string) error {
	for _, p := range paths {
		dir := filepath.Dir(p)
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			continue // there (or unreadable: the next step says why)
		}
		if err := os.MkdirAll(dir, stateDirMode); err != nil {
			return fmt.Errorf("create directory for %s: %w", p, err)
		}
		if err := os.Chmod(dir, stateDirMode); err != nil {
			return fmt.Errorf("create directory for %s: %w", p, err)
		}
	}
	return nil
}

// stateDirHint is what relayq serve adds when it could not create or open
// something in its state directory for want of permission: which directory
// it chose, and how to choose another.
func stateDirHint(err error, stateDir string) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return fmt.Sprintf("the state directory is %s (uid %d may not write there): set state_dir in the config to a directory this user may write, "+
		"or run relayq serve as the user that owns it (root, or relayq under systemd)", stateDir, os.Geteuid())
}
