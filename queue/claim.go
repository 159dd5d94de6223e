package queue

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Claim is a queue file taken ahead of Open: `relayq serve` claims the
// file, then binds its sockets (answering "starting" on them), then opens
// the queue, which can take seconds on a large file. The claim is what
// makes a second `relayq serve` on the same file fail with ErrLocked
// before it touches any socket, as it did when Open came first.
//
// On Linux a claim is an open file description lock (fcntl F_OFD_SETLK)
// on the whole file. It is independent of bbolt's flock, which Open
// takes as before (shared for its damage walk, then exclusive), so the
// claim and Open's own locking do not get in each other's way. Offline
// maintenance (CheckFile, CompactFile) takes bbolt's lock only, as
// before. Elsewhere a claim locks nothing and only prepares the file.
type Claim struct {
	path    string
	f       *os.File // nil where claims lock nothing
	created bool     // the claim made the file: it is empty until Open
}

// ClaimFile prepares the queue file at path as Open would (its directory
// made, an empty file set aside, its mode fixed), creates it if needed,
// and takes the claim, waiting up to opts.LockTimeout (0 means 1s) for
// another process to let go of it: then it fails with ErrLocked. Release
// lets it go; Open with Options.Claim set to it opens that file. Only
// LockTimeout, Now and Logger of opts are used here.
func ClaimFile(path string, opts Options) (*Claim, error) {
	timeout := cmp.Or(opts.LockTimeout, time.Second)
	log := cmp.Or(opts.Logger, slog.Default())
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("queue: claim %s: %w", path, err)
	}
	if err := prepareFile(path, now(), log); err != nil { // prepare.go
		return nil, fmt.Errorf("queue: claim %s: %w", path, err)
	}
	c, err := claimFile(path, timeout) // claim_linux.go
	if errors.Is(err, ErrLocked) {
		return nil, fmt.Errorf("queue: claim %s: %w (is another relayq serve running?)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: claim %s: %w", path, err)
	}
	return c, nil
}

// Release lets the claim go. A file the claim created and that is still
// empty (Open was never reached, or failed before writing) is removed, so
// that the next start does not find an empty queue file to set aside.
func (c *Claim) Release() error {
	if c == nil || c.f == nil {
		return nil
	}
	if c.created {
		if fi, err := c.f.Stat(); err == nil && fi.Size() == 0 {
			_ = os.Remove(c.path)
		}
	}
	err := c.f.Close() // closing the description drops its lock
	c.f = nil
	return err
}

// check says whether c is the claim on path, which Open was given.
func (c *Claim) check(path string) error {
	if c.path != path {
		return fmt.Errorf("the claim is on %s, not on this file", c.path)
	}
	return nil
}

// claimed reports whether a process holds a claim on the file at path:
// a relayq serve that is starting holds it before bbolt's lock, while its
// queue opens. The offline operations (CheckFile, OpenFileReader, CompactFile)
// then fail with ErrLocked at once, rather than take bbolt's shared lock
// and make the starting daemon's open wait for it (and time out).
func claimed(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false // the open that follows says what is wrong
	}
	defer f.Close()
	return claimedElsewhere(f)
}
