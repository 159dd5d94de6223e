package queue

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// claimRetry is how often claimFile tries again for a lock held
// elsewhere (bbolt's flock waits the same).
const claimRetry = 50 * time.Millisecond

// claimFile opens (creating it if needed) the file at path and takes an
// open file description lock on all of it, trying until timeout has
// passed. If the file was replaced while it waited (a compaction renamed
// a new file over it), it claims the file now at path. On a file system
// where flock is emulated with byte-range locks (NFS), the claim and
// bbolt's lock would conflict; relayq's queue does not belong there.
func claimFile(path string, timeout time.Duration) (*Claim, error) {
	deadline := time.Now().Add(timeout)
	for range 3 {
		created := true
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
		if errors.Is(err, os.ErrExist) {
			created = false
			f, err = os.OpenFile(path, os.O_RDWR, 0)
		}
		if err != nil {
			return nil, err
		}
		if err := lockClaim(f, deadline); err != nil {
			f.Close()
			return nil, err
		}
		if created {
			// The new file's directory entry must survive a crash too.
			if err := syncDir(filepath.Dir(path)); err != nil {
				f.Close()
				return nil, err
			}
		}
		same, err := isFileAt(f, path) // maintenance.go
		if err != nil {
			f.Close()
			return nil, err
		}
		if same {
			return &Claim{path: path, f: f, created: created}, nil
		}
		f.Close()
	}
	return nil, errors.New("the file keeps being replaced while relayq waits for its lock")
}

// lockClaim takes the claim's lock on f, trying until deadline; then it
// fails with ErrLocked.
func lockClaim(f *os.File, deadline time.Time) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK} // whence, start 0 and length 0: the whole file
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			return err
		}
		if time.Now().Add(claimRetry).After(deadline) {
			return ErrLocked
		}
		time.Sleep(claimRetry)
	}
}

// claimedElsewhere reports whether another open file description holds
// a claim on f's file: prepareFile leaves such a file alone, however
// empty (a starting relayq has just created it).
func claimedElsewhere(f *os.File) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

// takeOver claims the file at path, which online compaction is about to
// rename over the claimed file (compact_live.go), and lets the old one go:
// the claim must be on the file a second relayq serve would find at the
// queue's path. Nothing else knows the new file's name yet, so the lock
// is taken at once or not at all.
func (c *Claim) takeOver(path string) error {
	if c == nil || c.f == nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := lockClaim(f, time.Now()); err != nil {
		f.Close()
		return err
	}
	old := c.f
	c.f, c.created = f, false
	return old.Close()
}
