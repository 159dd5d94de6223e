package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Offline maintenance of the database file: opening it safely (Open uses
// openBolt), the read-only integrity check (CheckFile) and compaction
// (CompactFile). Both offline operations take bbolt's file lock, so they
// fail with ErrLocked while `relayq serve` holds the file, and the daemon
// cannot start while they run.

// openBolt opens the bbolt file at path for Open. A file that bbolt finds
// damaged is reported as ErrDamaged instead of crashing the process: with
// NoFreelistSync, bolt.Open walks every reachable page to rebuild the
// freelist, in a goroutine of its own that does not recover from the
// assertion a broken page trips. So an existing file is first opened
// read-only (which skips that walk) and read through by walk, whose panics
// are caught; only a file that reads cleanly is opened for writing.
//
// If the file was replaced (a compaction renamed a new file over it) while
// Open waited for the lock, the lock is on a file nobody will read again:
// openBolt then opens the path anew.
//
// A file whose freelist Close saved (freelist.go) is opened at once: bbolt
// reads the freelist instead of walking the file, and unwalked is true: the
// caller walks it in the background (pagewalk.go).
func openBolt(path string, o *bolt.Options) (db *bolt.DB, unwalked bool, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 && o.NoFreelistSync {
		fl, err := checkFreelist(path) // freelist.go
		if err != nil {
			return nil, false, err
		}
		if unwalked = fl != nil && sidecarMatches(path, fl); !unwalked {
			if err := walkFirst(path, o.Timeout, fl); err != nil {
				return nil, false, err
			}
		}
	}
	for range 3 {
		var file *os.File
		opts := *o
		opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		}
		db, err := openRecover(path, &opts)
		if err != nil {
			return nil, false, err
		}
		same, err := isFileAt(file, path)
		if err != nil {
			db.Close()
			return nil, false, err
		}
		if same {
			return db, unwalked, nil
		}
		db.Close()
	}
	return nil, false, errors.New("the file keeps being replaced while relayq waits for its lock")
}

// walkFirst reads the file at path through, read-only, before bbolt opens
// it for writing and rebuilds its freelist (see openBolt). When the file
// holds a saved freelist, fl, that Open could not trust without a walk
// (freelist.go), bbolt will read it instead of rebuilding it: it is
// checked against the pages in use first.
func walkFirst(path string, timeout time.Duration, fl *savedFreelist) error {
	prefetch(path)
	ro, err := openRecover(path, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return err
	}
	defer ro.Close()
	if err := walk(ro); err != nil {
		return err
	}
	if fl != nil {
		return checkFreelistAgainstPages(ro, fl)
	}
	return nil
}

// openRecover is bolt.Open that reports damage as ErrDamaged.
func openRecover(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, o)
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return db, err
}

// isFileAt reports whether f is still the file at path.
func isFileAt(f *os.File, path string) (bool, error) {
	if f == nil {
		return true, nil
	}
	open, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(open, now), nil
}

// walk reads every key of every bucket of db, so that a damaged page trips
// bbolt's page assertions here, where the panic is caught and reported as
// ErrDamaged, rather than in one of bbolt's checking goroutines.
func walk(db *bolt.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		// Release the pages read so far now and then, so that reading a
		// large file does not map all of it at once (mapped.go).
		n := 0
		release := func() {
			if n++; n%walkRelease == 0 {
				_ = dontNeed(db.Info().Data, tx.Size())
			}
		}
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walkBucket(b, release) })
	})
}

// walkRelease is how many keys walk reads between releases of mapped pages.
const walkRelease = 4096

func walkBucket(b *bolt.Bucket, seen func()) error {
	return b.ForEach(func(k, v []byte) error {
		seen()
		if v == nil {
			if child := b.Bucket(k); child != nil {
				return walkBucket(child, seen)
			}
		}
		return nil
	})
}

// safeInit runs init, reporting what a damaged file makes it trip over (a
// panic in bbolt, a record that does not decode) as ErrDamaged.
func (q *Queue) safeInit() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	err = q.init()
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		err = fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return err
}

// checkTx runs bbolt's page-level check and, when that finds nothing,
// relayq's own (which reads every record and would trip over broken pages).
// A panic on the way is reported as a problem.
func checkTx(tx *bolt.Tx) (problems []error) {
	defer func() {
		if r := recover(); r != nil {
			problems = append(problems, fmt.Errorf("reading the file failed: %v", r))
		}
	}()
	for err := range tx.Check() {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return problems
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			problems = append(problems, fmt.Errorf("bucket %q is missing", name))
		}
	}
	if len(problems) > 0 {
		return problems
	}
	for _, p := range append(append(checkIndex(tx), checkArchive(tx)...), checkCounters(tx)...) {
		problems = append(problems, inconsistency{p})
	}
	return problems
}

// inconsistency is a problem relayq's own check found in a file bbolt
// reads fine: it matches ErrInconsistent and reads as the problem.
type inconsistency struct{ error }

func (e inconsistency) Is(target error) bool { return target == ErrInconsistent }
func (e inconsistency) Unwrap() error        { return e.error }

// CheckFile checks the database file at path without changing it: the file
// is opened read-only, under a shared lock that it waits at most
// lockTimeout for (ErrLocked while `relayq serve` holds the file). It
// returns the problems found, none for a sound file. err is for what kept
// the check from running (no such file, no permission, locked).
func CheckFile(path string, lockTimeout time.Duration) (problems []error, err error) {
	db, err := openReadOnly("check", path, lockTimeout)
	switch {
	case errors.Is(err, ErrDamaged), errors.Is(err, ErrEmpty):
		return []error{err}, nil
	case err != nil:
		return nil, err
	}
	defer db.Close()
	if _, err := checkFreelist(path); err != nil {
		// bbolt's check reads the saved freelist as it is (freelist.go).
		return []error{err}, nil
	}
	prefetch(path)
	if err := walk(db); err != nil {
		// bbolt's own check would crash on it (see openBolt).
		return []error{err}, nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		problems = checkTx(tx)
		return nil
	})
	return problems, err
}

// openReadOnly opens the file at path read-only under a shared lock, for
// op ("check", "list"): ErrLocked after lockTimeout while the daemon holds
// it; ErrDamaged, as openRecover reports it, for a file bbolt cannot read;
// ErrEmpty for a file of 0 bytes.
func openReadOnly(op, path string, lockTimeout time.Duration) (*bolt.DB, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("queue: %s %s: %w", op, path, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("queue: %s %s: %w", op, path, errIsDir)
	}
	if claimed(path) { // claim.go: a relayq serve is opening it
		return nil, fmt.Errorf("queue: %s %s: %w", op, path, ErrLocked)
	}
	if fi.Mode().IsRegular() && fi.Size() == 0 {
		// bbolt would try to write a new database into it, and fail
		// with a baffling "bad file descriptor" on the read-only file.
		return nil, fmt.Errorf("queue: %s %s: %w", op, path, ErrEmpty)
	}
	db, err := openRecover(path, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("queue: %s %s: %w", op, path, ErrLocked)
	case errors.Is(err, ErrDamaged):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("queue: %s %s: %w", op, path, err)
	}
	return db, nil
}

// CompactResult says what CompactFile did.
type CompactResult struct {
	SizeBefore, SizeAfter int64
	// Keys counts the entries of each bucket, the same before and after.
	Keys map[string]int
}

// CompactFile rewrites the database file at path into a new file with
// bbolt's Compact, checks that the copy holds every entry of every bucket
// and passes bbolt's check, fsyncs it, gives it the old file's mode and
// owner, and renames it over the old file (then fsyncs the directory). The
// old file is held under a shared lock throughout, waited for at most
// lockTimeout: ErrLocked while `relayq serve` holds it. A damaged file is
// refused with ErrDamaged. On any failure the old file is left as it was.
func CompactFile(path string, lockTimeout time.Duration) (res CompactResult, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("queue: compact %s: %w", path, err)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.SizeBefore = fi.Size()
	if fi.IsDir() {
		return res, errIsDir
	}
	if claimed(path) { // claim.go: a relayq serve is opening it
		return res, ErrLocked
	}
	if fi.Size() == 0 {
		return res, ErrEmpty
	}
	src, err := openRecover(path, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return res, ErrLocked
	}
	if err != nil {
		return res, err
	}
	defer src.Close()
	prefetch(path)
	if err := walk(src); err != nil {
		return res, fmt.Errorf("%w (run relayq queue check)", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".compact-*")
	if err != nil {
		return res, err
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer func() {
		if err != nil {
			os.Remove(tmpPath)
		}
	}()
	if res.Keys, err = compactInto(src, tmpPath); err != nil {
		return res, err
	}
	if err := matchOwner(tmpPath, fi); err != nil {
		return res, err
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return res, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return res, err
	}
	if after, err := os.Stat(path); err == nil {
		res.SizeAfter = after.Size()
	}
	return res, nil
}

// compactInto copies src into a new bbolt file at dst, verifies the copy
// and fsyncs it. It returns the entry counts. src must not change: the
// offline compaction's file, opened read-only under bbolt's lock.
func compactInto(src *bolt.DB, dst string) (keys map[string]int, err error) {
	return copyInto(dst, func(db *bolt.DB) (map[string]int, error) {
		before, err := countKeys(src)
		if err != nil {
			return nil, err
		}
		return before, bolt.Compact(db, src, compactTxSize)
	})
}

// compactTxSize bounds the bytes one commit of a copy carries.
const compactTxSize = 64 << 20

// copyInto makes a new bbolt file at dst, fills it with fill, which
// returns the entry counts of what it copied, verifies the copy has them
// and passes bbolt's check, and fsyncs it.
func copyInto(dst string, fill func(*bolt.DB) (map[string]int, error)) (keys map[string]int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v (run relayq queue check)", ErrDamaged, r)
		}
	}()
	db, err := bolt.Open(dst, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	before, err := fill(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	after, err := countKeys(db)
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error { return errors.Join(collect(tx.Check())...) })
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("the compacted copy is not sound: %w", err)
	}
	for name, n := range before {
		if after[name] != n {
			return nil, fmt.Errorf("the compacted copy has %d entries in bucket %q, the original %d", after[name], name, n)
		}
	}
	return before, fsyncFile(dst)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

// countKeys counts the entries of every top-level bucket.
func countKeys(db *bolt.DB) (map[string]int, error) {
	keys := make(map[string]int)
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			keys[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	return keys, err
}

func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// matchOwner gives the file at path the mode, owner and group of old.
func matchOwner(path string, old os.FileInfo) error {
	if err := os.Chmod(path, old.Mode().Perm()); err != nil {
		return err
	}
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if now, ok := fi.Sys().(*syscall.Stat_t); ok && now.Uid == st.Uid && now.Gid == st.Gid {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("cannot give the new file the old one's owner (run as root or as the daemon's user): %w", err)
	}
	return nil
}
