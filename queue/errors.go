package queue

import (
	"errors"
	"strings"
	"syscall"

	berrors "go.etcd.io/bbolt/errors"
)

// Errors a caller can test for with errors.Is.
var (
	// ErrFull is returned by Put when the store reached Options.MaxSize or the
	// file system is out of space. Intake answers 452 4.3.1; nothing was stored.
	ErrFull = errors.New("queue: store is full")
	// ErrLocked is returned by Open when another process holds the database
	// (another relayq serve on the same file).
	ErrLocked = errors.New("queue: database is locked by another process")
	// ErrNotFound is returned when no message or dead letter has the given ID.
	ErrNotFound = errors.New("queue: no such message")
	// ErrLeaseLost is returned by Record and Release when the lease ran out
	// and the message was leased again (or removed) meanwhile.
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("queue: closed")
	// ErrLeased is reported by the operator operations (Hold, Delete,
	// Expire, Retry, Requeue) for a message a worker is delivering right
	// now: it is not changed under the worker's feet. Try again once the
	// attempt has ended.
	ErrLeased = errors.New("queue: message is being delivered")
	// ErrHeld is reported by Retry for a held message: release it first.
	ErrHeld = errors.New("queue: message is on hold")
	// ErrNotHeld is reported by Unhold for a message that is not held:
	// there was nothing to release.
	ErrNotHeld = errors.New("queue: message is not on hold")
	// ErrBadClass is returned by ParseReplyClass for a pattern that is not
	// a reply class.
	ErrBadClass = errors.New("queue: bad reply class")
	// ErrNoticeSent is returned by PutNotice when a notice of that kind
	// was queued about the message already: nothing was queued.
	ErrNoticeSent = errors.New("queue: notice already queued")
	// ErrDamaged is returned by Open, CheckFile and CompactFile when the
	// database file is damaged (bbolt cannot read its pages, or a record
	// does not decode). `relayq queue check` says what is wrong.
	ErrDamaged = errors.New("queue: database file is damaged")
	// ErrFreelistDamaged is reported, along with ErrDamaged, when the
	// freelist Close saved in the file is damaged: the records are fine,
	// and `relayq compact` (CompactFile) writes a sound file without it.
	ErrFreelistDamaged = errors.New("queue: saved freelist is damaged")
	// ErrRecordDamaged is reported for a message whose record in the
	// file does not decode. Listings show it in StateDamaged; Delete and
	// Expire work on it; the other operator operations report it per ID
	// and leave it alone; delivery skips it.
	ErrRecordDamaged = errors.New("queue: message record is damaged")
	// ErrCorrupt is returned by VerifyBody when a stored body does not
	// match the checksum taken when it was queued: it must not be sent.
	ErrCorrupt = errors.New("queue: message body is corrupt")
	// ErrEmpty is returned by CheckFile (as its one problem), OpenFileReader
	// and CompactFile for a queue file of 0 bytes, which is no database:
	// Open sets such a file aside (prepare.go) instead of using it.
	ErrEmpty = errors.New("queue: the queue file is empty (0 bytes)")
	// ErrInconsistent is matched by the problems Check and CheckFile find
	// in relayq's own records (a message without its schedule entry, an
	// orphaned body) of a file bbolt reads without trouble.
	ErrInconsistent = errors.New("queue: records are inconsistent")
)

// fullErr maps storage errors that mean "no room" to ErrFull, keeping the
// cause for the log.
func fullErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT) || noRoomToGrow(err) {
		return errors.Join(ErrFull, err)
	}
	return err
}

// noRoomToGrow recognises bbolt's failure to extend the file (v1.5.0,
// DB.mmap: "file resize error: %s"), which keeps the error's text but not
// the error itself: the file size limit (RLIMIT_FSIZE, systemd's
// LimitFSIZE=), or a quota or a full disk where extending allocates.
func noRoomToGrow(err error) bool {
	msg := err.Error()
	if !strings.Contains(msg, "file resize error: ") {
		return false
	}
	for _, errno := range []syscall.Errno{syscall.EFBIG, syscall.ENOSPC, syscall.EDQUOT} {
		if strings.Contains(msg, errno.Error()) {
			return true
		}
	}
	return false
}
