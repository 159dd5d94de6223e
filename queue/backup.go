package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Hot backups: a copy of the whole queue file as one commit left it,
// taken while the daemon runs (Queue.Backup) or while it is stopped
// (BackupFile). The copy is bbolt's Tx.WriteTo from one read transaction:
// commits go on meanwhile, and the copy holds exactly what was committed
// when it began, every message acknowledged before then included. It is a
// queue file like any other: `relayq queue check` checks it, and relayq
// serve opens it once it is put in the queue file's place.
//
// The copy is written into a file the caller opened (`relayq backup`
// creates it and hands the daemon its descriptor over the control
// socket), so that it lands wherever the caller may write, with the
// caller's owner, whatever the daemon's own sandbox lets it reach.
//
// While the copy runs, its read transaction keeps bbolt from remapping
// the file: a commit that needs the file to grow waits for the copy to
// end (as it waits for any reader), and the copy runs at the disks'
// speed. The free-page passes (giveback.go) and compaction wait too.

// BackupResult says what a backup holds.
type BackupResult struct {
	// Size is the copy's size in bytes: the file's, free pages included
	// (`relayq compact` on the copy shrinks it).
	Size int64 `json:"size"`
	// TxID is the commit the copy holds.
	TxID uint64 `json:"txid"`
	// Messages and Dead count what the copy holds.
	Messages int           `json:"messages"`
	Dead     int           `json:"dead"`
	Took     time.Duration `json:"took"`
}

// ErrBackupNotCreated is matched by SaveBackup's errors when the backup
// file itself cannot be made where it was asked for (no such directory,
// no permission there, or the rename into place failed).
var ErrBackupNotCreated = errors.New("queue: cannot create the backup file")

// ErrNotRegular is returned by Backup for a destination that is not a
// regular file (a pipe, a socket, a device).
var ErrNotRegular = errors.New("queue: a backup is written only into a regular file")

// Backup writes a copy of the queue file, as its last commit left it, into
// dst from its start, truncates dst to the copy's size and fsyncs it. dst
// must be a regular file opened for writing. It returns ErrFull when the
// file system dst is on has no room for the copy (on the queue's own file
// system, for the copy and min_free besides), before writing anything.
func (q *Queue) Backup(dst *os.File) (BackupResult, error) {
	// No free-page pass or compaction while the copy is made: a pass
	// would wait for its read transaction anyway, and a swap could not
	// happen under it.
	q.passes.Lock()
	defer q.passes.Unlock()
	if q.closed {
		return BackupResult{}, ErrClosed
	}
	var minFree int64
	if sameFileSystem(dst, q.db.Path()) {
		minFree = q.opts.MinFree
	}
	res, err := backupInto(q.db, dst, minFree, q.closing)
	if err != nil {
		return res, fmt.Errorf("queue: backup: %w", err)
	}
	return res, nil
}

// BackupFile is Backup of the queue file at path while no relayq serve
// holds it: the file is opened read-only under a shared lock waited for at
// most lockTimeout (ErrLocked while the daemon holds it).
func BackupFile(path string, dst *os.File, lockTimeout time.Duration) (BackupResult, error) {
	db, err := openReadOnly("backup", path, lockTimeout)
	if err != nil {
		return BackupResult{}, err
	}
	defer db.Close()
	var minFree int64
	if sameFileSystem(dst, path) {
		// The daemon's min_free is not known here; the copy must at
		// least leave the queue room for a commit.
		minFree = 1 << 20
	}
	res, err := backupInto(db, dst, minFree, nil)
	if err != nil {
		return res, fmt.Errorf("queue: backup %s: %w", path, err)
	}
	return res, nil
}

// backupSuffix is what the temporary file of SaveBackup adds to the
// backup's name.
const backupSuffix = ".relayq-backup-"

// SaveBackup makes the file at path a backup: take writes the copy
// (Queue.Backup through the daemon, or BackupFile) into a new file beside
// path, mode 0600 whatever the umask (it holds every queued message);
// the copy is then checked as CheckFile checks a queue file, renamed over
// path and the directory fsynced. On any failure path is left as it was
// and the new file removed; a copy that fails its check is
// ErrDamaged.
func SaveBackup(path string, take func(*os.File) (BackupResult, error)) (res BackupResult, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+backupSuffix+"*") // mode 0600
	if err != nil {
		return res, fmt.Errorf("%w %s: %w", ErrBackupNotCreated, path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	res, err = take(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("queue: backup %s: %w", tmp, cerr)
	}
	if err != nil {
		return res, err
	}
	problems, err := CheckFile(tmp, time.Second)
	if err != nil {
		return res, err
	}
	if len(problems) > 0 {
		return res, fmt.Errorf("%w: the backup fails its check: %v", ErrDamaged, errors.Join(problems...))
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("%w %s: %w", ErrBackupNotCreated, path, err)
	}
	if err := syncDir(dir); err != nil {
		return res, fmt.Errorf("queue: backup %s: fsync of its directory: %w", path, err)
	}
	return res, nil
}

// errBackupStopped ends a copy that Close interrupted.
var errBackupStopped = errors.New("the queue is closing")

// backupInto writes the copy (see Backup); minFree is the room the copy
// must leave on dst's file system. A copy stops when stop closes.
func backupInto(db viewer, dst *os.File, minFree int64, stop <-chan struct{}) (res BackupResult, err error) {
	start := time.Now()
	fi, err := dst.Stat()
	if err != nil {
		return res, err
	}
	if !fi.Mode().IsRegular() {
		return res, fmt.Errorf("%w (%s is %v)", ErrNotRegular, dst.Name(), fi.Mode().Type())
	}
	err = db.View(func(tx *bolt.Tx) error {
		size := tx.Size()
		if free, err := fileSystemFree(dst); err == nil && free-size < minFree {
			return fmt.Errorf("%w: %d bytes free where the backup goes, the copy needs %d and leaves at least %d free", ErrFull, free, size, minFree)
		}
		if err := dst.Truncate(0); err != nil {
			return err
		}
		if _, err := dst.Seek(0, 0); err != nil {
			return err
		}
		n, err := tx.WriteTo(stoppableWriter{dst, stop})
		if err != nil {
			return fullErr(fmt.Errorf("writing the copy after %d bytes: %w", n, err))
		}
		t, err := totalsOf(tx)
		if err != nil {
			return err
		}
		res = BackupResult{Size: n, TxID: uint64(tx.ID()), Messages: t.Messages, Dead: t.Dead}
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := dst.Sync(); err != nil {
		return res, fullErr(fmt.Errorf("fsync of the copy: %w", err))
	}
	res.Took = time.Since(start)
	return res, nil
}

// stoppableWriter fails its writes once stop is closed.
type stoppableWriter struct {
	w    *os.File
	stop <-chan struct{}
}

func (s stoppableWriter) Write(p []byte) (int, error) {
	select {
	case <-s.stop:
		return 0, errBackupStopped
	default:
	}
	return s.w.Write(p)
}

// fileSystemFree is the room left to unprivileged writers on f's file
// system.
func fileSystemFree(f *os.File) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// sameFileSystem reports whether f lies on the file system of the file at
// path.
func sameFileSystem(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev
}
