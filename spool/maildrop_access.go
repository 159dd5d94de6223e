package spool

import (
	"errors"
	"fmt"
	"os"
)

// MaildropMode is the maildrop directory's mode for a submission socket
// with mode socketMode: whoever may write to the socket may create files in
// the maildrop, and nobody else, so that a user kept off the socket (by
// socket_mode and socket_group) cannot submit through the fallback either.
// The owner (the daemon) has rwx; the group and others get write and
// search (wx, never read: nobody but the daemon lists the directory) when
// the socket gives them write; the sticky bit is always set. Socket mode
// 0666 (the default) gives 01733, 0660 gives 01730, 0600 gives 01700.
func MaildropMode(socketMode os.FileMode) os.FileMode {
	mode := os.ModeSticky | 0o700
	if socketMode&0o020 != 0 {
		mode |= 0o030
	}
	if socketMode&0o002 != 0 {
		mode |= 0o003
	}
	return mode
}

// EnsureMaildropFor creates the maildrop directory if needed, sets its group
// to gid (-1: leave it) and its mode to MaildropMode(socketMode), whatever
// the umask. The daemon calls it at start, as the user that will import, with
// the submission socket's mode and group.
func EnsureMaildropFor(dir string, socketMode os.FileMode, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("spool: maildrop: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("spool: maildrop: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("spool: maildrop %s is not a directory", dir)
	}
	if gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("spool: maildrop %s: set group %d: %w", dir, gid, err)
		}
	}
	if err := os.Chmod(dir, MaildropMode(socketMode)); err != nil {
		return fmt.Errorf("spool: maildrop: %w", err)
	}
	return nil
}
