package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fileMode is the only mode a queue file may have: it holds every queued
// message, so only the daemon's user may read it.
const fileMode = 0o600

// errIsDir is reported for a queue path that is a directory. bbolt would
// open it and call it an invalid database (ErrDamaged), sending the
// operator to look for damage in a file that is not there.
var errIsDir error = isDirError{}

// isDirError is errIsDir's type: a plain value, so that importing queue
// (sendmail's client does, for the envelope) costs no fmt work at start.
type isDirError struct{}

func (isDirError) Error() string { return syscall.EISDIR.Error() + ", not a queue file" }
func (isDirError) Unwrap() error { return syscall.EISDIR }

// prepareFile looks at the queue file at path before Open hands it to
// bbolt, and says out loud what it finds wrong:
//
//   - An existing file of 0 bytes is not a queue: bbolt would silently
//     write a fresh, empty database into it, and whatever the file was
//     meant to hold (a truncation, a botched restore or copy) would be
//     forgotten without a word. (relayq itself leaves one only when it is
//     killed in the milliseconds between creating a new file and writing
//     its first pages.) It is renamed aside to
//     "<path>.empty.<UTC time>" and logged at ERROR; Open then creates a
//     new file.
//   - A directory is refused (errIsDir, matching syscall.EISDIR).
//   - A file with a mode other than 0600 is chmod'ed to 0600, with a
//     warning that names the mode it had.
//
// A file another process holds locked (a relayq creating it this very
// moment) is left alone: bbolt's lock then decides, as it would have.
func prepareFile(path string, now time.Time, log *slog.Logger) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return errIsDir
	case !fi.Mode().IsRegular():
		return nil // bbolt will say what is wrong with it
	case fi.Size() == 0:
		return setAsideEmpty(path, now, log)
	}
	return fixMode("the queue file", path, fi.Mode().Perm(), func() error { return os.Chmod(path, fileMode) }, log)
}

// fixMode sets the file at path, which has the mode perm, to fileMode with
// chmod, with a warning that names what it is and the mode it had; it
// does nothing to a file that has fileMode already. The queue file and
// its in-flight journal (inflight.go) go through it.
func fixMode(what, path string, perm fs.FileMode, chmod func() error, log *slog.Logger) error {
	if perm == fileMode {
		return nil
	}
	if err := chmod(); err != nil {
		return fmt.Errorf("%s has mode %04o, and it cannot be set to %04o: %w", what, perm, fileMode, err)
	}
	log.Warn(what+"'s mode was not 0600: set to 0600 (check what changed it; another user may have read what it holds)",
		"path", path, "mode", fmt.Sprintf("%04o", perm))
	return nil
}

// setAsideEmpty renames the empty file at path aside, unless another
// process holds its lock.
func setAsideEmpty(path string, now time.Time, log *slog.Logger) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil // in use: bbolt's own lock decides
	}
	if claimedElsewhere(f) { // claim_linux.go: a starting relayq made it
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 0 {
		return err // written to meanwhile: not ours to set aside
	}
	aside := fmt.Sprintf("%s.empty.%s", path, now.UTC().Format("20060102T150405Z"))
	for n := 1; ; n++ {
		if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.empty.%s.%d", path, now.UTC().Format("20060102T150405Z"), n)
	}
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("set the empty queue file aside: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	log.Error("the queue file was empty (0 bytes): set it aside and started a new queue; "+
		"if messages were queued, the file was truncated or badly restored: restore it from a backup", "path", path, "set_aside", aside)
	return nil
}
