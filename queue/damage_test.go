package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// scribble changes a stored value behind the store's back, as a bad disk
// or a stray write would: change gets a copy of the value and returns
// what to store instead.
func scribble(t *testing.T, q *Queue, bucket, key []byte, change func(v []byte) []byte) {
	t.Helper()
	err := q.commit.commit(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(key)
		if v == nil {
			return fmt.Errorf("no %s/%q to scribble on", bucket, key)
		}
		return tx.Bucket(bucket).Put(key, change(bytes.Clone(v)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// scribbleBody changes chunk n of id's stored body, in whichever form it
// is stored (body.go).
func scribbleBody(t *testing.T, q *Queue, id string, n uint32, change func(v []byte) []byte) {
	t.Helper()
	var missing bool
	err := q.commit.commit(func(tx *bolt.Tx) error {
		b, k := tx.Bucket(bucketBodies), chunkKey(id, n)
		if nested := b.Bucket([]byte(id)); nested != nil {
			b, k = nested, k[len(id)+1:]
		}
		v := b.Get(k)
		if missing = v == nil; missing {
			return nil
		}
		return b.Put(k, change(bytes.Clone(v)))
	})
	if err != nil || missing {
		t.Fatalf("scribbling on chunk %d of %s: %v (missing: %v)", n, id, err, missing)
	}
}

// flip inverts one byte of v.
func flip(at int) func(v []byte) []byte {
	return func(v []byte) []byte { v[at] ^= 0xff; return v }
}

// TestDamagedRecordIsListedCountedAndRemovable: one message record that
// does not decode no longer breaks listing, counting or the operator's
// operations on the others (each used to fail as a whole). It is listed
// as damaged with its ID, counted, never leased nor waited for, refused
// per ID by hold/retry/release, and delete takes it out of the queue with
// its schedule entry and body.
func TestDamagedRecordIsListedCountedAndRemovable(t *testing.T) {
	c := newClock()
	q, _ := openTest(t, Options{Now: c.Now})
	good1 := put(t, q, "one\r\n", "a@x.org")
	bad := put(t, q, "the damaged one\r\n", "b@x.org")
	good2 := put(t, q, "two\r\n", "c@x.org")
	scribble(t, q, bucketMessages, []byte(bad), flip(0))

	msgs, err := q.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(msgs) != 3 {
		t.Fatalf("List gave %d messages, want 3", len(msgs))
	}
	d := msgs[1]
	if d.ID != bad || d.State() != StateDamaged || d.Damaged == "" || d.Size != int64(len("the damaged one\r\n")) || d.Created.Sub(c.Now()).Abs() > time.Second {
		t.Errorf("damaged record listed as %+v (state %s)", d, d.State())
	}
	if msgs[0].State() != StateQueued || msgs[2].State() != StateQueued {
		t.Errorf("the others: %s, %s", msgs[0].State(), msgs[2].State())
	}
	sum, err := q.Summarize(time.Time{})
	if err != nil || sum.Damaged != 1 || sum.Queued != 2 {
		t.Errorf("Summarize = %+v, %v; want 2 queued, 1 damaged", sum, err)
	}
	if m, err := q.Get(bad); !errors.Is(err, ErrRecordDamaged) || m == nil || m.State() != StateDamaged {
		t.Errorf("Get(damaged) = %+v, %v", m, err)
	}
	if l, err := q.Lookup(bad); err != nil || l.Message == nil || l.Message.State() != StateDamaged {
		t.Errorf("Lookup(damaged) = %+v, %v", l, err)
	}

	for _, op := range []struct {
		name string
		do   func([]string) ([]IDResult, error)
	}{{"hold", q.Hold}, {"release", q.Unhold}, {"retry", q.Retry}} {
		res, err := op.do([]string{good1, bad})
		if err != nil || len(res) != 2 || res[0].Err != nil || !errors.Is(res[1].Err, ErrRecordDamaged) {
			t.Errorf("%s: %+v, %v; want the good one done and the damaged one refused", op.name, res, err)
		}
	}
	if _, err := q.RetryAll(); err != nil {
		t.Errorf("RetryAll: %v", err)
	}

	leases, err := q.Lease(10)
	if err != nil || len(leases) != 2 {
		t.Fatalf("Lease = %d leases, %v; want the 2 good ones", len(leases), err)
	}
	for _, l := range leases {
		if l.ID == bad {
			t.Fatal("the damaged record was leased")
		}
	}
	// Nothing else is due: delivery must not be woken for the damaged
	// record again and again.
	if due, ok := q.NextDue(); ok && !due.After(c.Now()) {
		t.Errorf("NextDue = %v (now %v): the damaged record keeps delivery awake", due, c.Now())
	}
	for _, l := range leases {
		if _, err := q.Record(l, []Outcome{{Address: l.Recipients[0].Address, Result: Delivered}}); err != nil {
			t.Fatal(err)
		}
	}

	if err := one(t, q.Delete, bad); err != nil {
		t.Fatalf("Delete(damaged): %v", err)
	}
	if msgs, err := q.List(); err != nil || len(msgs) != 0 {
		t.Errorf("after delete: %d messages, %v", len(msgs), err)
	}
	if _, err := io.ReadAll(q.Body(bad)); !errors.Is(err, ErrNotFound) {
		t.Errorf("body after delete: %v, want ErrNotFound", err)
	}
	_ = good2
	// The cleanup check finds no schedule entry or body left behind.
}

// TestExpireDamagedRecordKeepsTheBody: expire takes a damaged record out
// of the queue into a dead letter of reason damaged that keeps the body,
// so that an operator can still read the message.
func TestExpireDamagedRecordKeepsTheBody(t *testing.T) {
	q, _ := openTest(t, Options{})
	bad := put(t, q, "keep me\r\n", "b@x.org")
	scribble(t, q, bucketMessages, []byte(bad), func(v []byte) []byte { return v[:len(v)/2] })
	if err := one(t, q.Expire, bad); err != nil {
		t.Fatalf("Expire(damaged): %v", err)
	}
	d, err := q.GetDead(bad)
	if err != nil || d.Reason != ReasonDamaged {
		t.Fatalf("dead letter %+v, %v; want reason %q", d, err, ReasonDamaged)
	}
	if body, err := io.ReadAll(q.Body(bad)); err != nil || string(body) != "keep me\r\n" {
		t.Errorf("body %q, %v", body, err)
	}
	if msgs, err := q.List(); err != nil || len(msgs) != 0 {
		t.Errorf("still queued: %d, %v", len(msgs), err)
	}
}

// TestCorruptBodyIsCaught: a body whose bytes changed after it was
// queued fails VerifyBody (here in its second chunk), Check names it, and
// DeadCorrupt moves every pending recipient to a dead letter of reason
// corrupt that keeps the body.
func TestCorruptBodyIsCaught(t *testing.T) {
	q, _ := openTest(t, Options{})
	body := strings.Repeat("0123456789abcdef\r\n", chunkSize/18*2)
	id := put(t, q, body, "a@x.org", "b@x.org")
	m, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.VerifyBody(m); err != nil {
		t.Fatalf("VerifyBody of an intact body: %v", err)
	}
	scribbleBody(t, q, id, 1, flip(10))

	if err := q.VerifyBody(m); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("VerifyBody of a corrupt body = %v, want ErrCorrupt", err)
	}
	problems := q.Check()
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), id) || !strings.Contains(problems[0].Error(), "corrupt") {
		t.Fatalf("Check found %v; want the corrupt body of %s named", problems, id)
	}

	l := leaseOne(t, q)
	rec, err := q.DeadCorrupt(l, q.VerifyBody(l.Message))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Pending()) != 0 {
		t.Errorf("still pending: %v", rec.Pending())
	}
	d, err := q.GetDead(id)
	if err != nil || d.Reason != ReasonCorrupt || len(d.Recipients) != 2 {
		t.Fatalf("dead letter %+v, %v", d, err)
	}
	if r := d.Recipients[0].LastReply; r == nil || r.Lines[0] != CorruptLine || r.Enhanced != "5.3.0" {
		t.Errorf("reply %+v", r)
	}
	if got, _ := io.ReadAll(q.Body(id)); len(got) != len(body) {
		t.Errorf("dead letter kept %d bytes of body, want %d", len(got), len(body))
	}
	// Check still names it while the dead letter keeps the corrupt body.
	if p := q.Check(); len(p) != 1 || !strings.Contains(p[0].Error(), "dead letter "+id) {
		t.Errorf("Check after dead-lettering: %v", p)
	}
	if _, err := q.PurgeDead(0); err != nil {
		t.Fatal(err)
	}
}

// TestRecordWithoutChecksumIsUnchecked: records written before bodies had
// a checksum are delivered as they are: VerifyBody and Check pass them.
func TestRecordWithoutChecksumIsUnchecked(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "old format\r\n", "a@x.org")
	scribble(t, q, bucketMessages, []byte(id), func(v []byte) []byte {
		m, err := decodeMessage(v)
		if err != nil || m.BodyCRC32C == nil {
			t.Fatalf("new record %q has no checksum (%v)", v, err)
		}
		// Such a record is in the JSON layout of its time.
		return bytes.Replace(jsonRecord(t, v), []byte(`,"body_crc32c":`), []byte(`,"x_old":`), 1)
	})
	scribbleBody(t, q, id, 0, flip(0))
	m, err := q.Get(id)
	if err != nil || m.BodyCRC32C != nil {
		t.Fatalf("Get = %+v, %v", m, err)
	}
	if err := q.VerifyBody(m); err != nil {
		t.Errorf("VerifyBody of a record without checksum: %v", err)
	}
	// The cleanup check must find nothing either.
}

// TestEmptyFileIsSetAside: an existing 0-byte queue file is not silently
// made into a new queue: it is renamed to queue.db.empty.<time>, an ERROR
// is logged, and the store opens on a new file.
func TestEmptyFileIsSetAside(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	q, err := Open(path, Options{Now: c.Now, Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	aside := path + ".empty.20261125T120000Z"
	if fi, err := os.Stat(aside); err != nil || fi.Size() != 0 {
		t.Errorf("set aside: %v, %v", fi, err)
	}
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), aside) {
		t.Errorf("log %q: want an ERROR naming %s", log.String(), aside)
	}
	id := put(t, q, "x\r\n", "a@x.org")
	if _, err := q.Get(id); err != nil {
		t.Errorf("the new store does not work: %v", err)
	}
}

// TestDirectoryIsNotDamage: a queue path that is a directory used to be
// reported as a damaged database (ErrDamaged: exit 65 and a hint to run
// queue check) by Open, CheckFile and CompactFile. It is "is a
// directory" (syscall.EISDIR), and not ErrDamaged.
func TestDirectoryIsNotDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, openErr := Open(path, Options{})
	problems, checkErr := CheckFile(path, time.Second)
	_, compactErr := CompactFile(path, time.Second)
	for _, c := range []struct {
		op  string
		err error
	}{{"Open", openErr}, {"CheckFile", errors.Join(append(problems, checkErr)...)}, {"CompactFile", compactErr}} {
		if !errors.Is(c.err, syscall.EISDIR) || errors.Is(c.err, ErrDamaged) || !strings.Contains(fmt.Sprint(c.err), "is a directory") {
			t.Errorf("%s of a directory: %v; want \"is a directory\", not ErrDamaged", c.op, c.err)
		}
	}
	if problems != nil {
		t.Errorf("CheckFile reported problems %v; a directory is no file to check", problems)
	}
}

// TestFileModeIsFixed: a queue file readable by others is set to 0600 at
// open, with a warning naming the mode it had.
func TestFileModeIsFixed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	q, err = Open(path, Options{Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after open: %v, %v", fi.Mode(), err)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "mode=0644") {
		t.Errorf("log %q: want a warning with mode=0644", log.String())
	}
}

func TestIDTime(t *testing.T) {
	var s idSource
	now := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	if got := idTime(s.next(now)); !got.Equal(now) {
		t.Errorf("idTime = %v, want %v", got, now)
	}
	if got := idTime("not an id"); !got.IsZero() {
		t.Errorf("idTime(garbage) = %v", got)
	}
}

// TestCheckPassesBodiesOf48ChunksAndMore: chunk 47's key ends in the byte
// '/', which Check used to take for the end of the ID, so that a sound
// body over 11.75 MiB (the default max_message_size is 25 MiB) was
// reported as orphaned and `queue check` failed a sound file.
func TestCheckPassesBodiesOf48ChunksAndMore(t *testing.T) {
	q, _ := openTest(t, Options{})
	body := strings.Repeat("x", 48*chunkSize+1)
	id := put(t, q, body, "a@x.org")
	if p := q.Check(); len(p) != 0 {
		t.Errorf("Check of a sound %d-byte body: %v", len(body), p)
	}
	if got, err := io.ReadAll(q.Body(id)); err != nil || len(got) != len(body) {
		t.Errorf("read back %d bytes, %v", len(got), err)
	}
}

// TestDamagedDeadLetterIsListedAndPurgeable: one dead letter record that
// does not decode used to make ListDead, Summarize, RequeueAll, PurgeDead,
// the failure notices and the limits' Footprints fail for every dead
// letter. Now it is listed as a stand-in with its ID, counted, refused per
// ID by Requeue, left out of RequeueAll and of purges by age, named by
// Check, and DeleteDead removes it with its body.
func TestDamagedDeadLetterIsListedAndPurgeable(t *testing.T) {
	q, _ := openTest(t, Options{})
	good := put(t, q, "good\r\n", "a@x.org")
	fail(t, q, reply550, "a@x.org")
	bad := put(t, q, "bad\r\n", "b@x.org")
	fail(t, q, reply550, "b@x.org")
	scribble(t, q, bucketDead, []byte(bad), flip(0))

	dead, err := q.ListDead()
	if err != nil || len(dead) != 2 || dead[0].Damaged != "" || dead[1].ID != bad || dead[1].Damaged == "" || dead[1].Size != 5 {
		t.Fatalf("ListDead = %+v, %v", dead, err)
	}
	if s, err := q.Summarize(time.Time{}); err != nil || s.Dead != 2 || s.DamagedDead != 1 || s.DeadSince != 1 {
		t.Errorf("Summarize = %+v, %v", s, err)
	}
	if d, err := q.GetDead(bad); !errors.Is(err, ErrRecordDamaged) || d == nil || d.Damaged == "" {
		t.Errorf("GetDead(damaged) = %+v, %v", d, err)
	}
	if l, err := q.Lookup(bad); err != nil || l.Dead == nil || l.Dead.Damaged == "" {
		t.Errorf("Lookup(damaged) = %+v, %v", l, err)
	}
	if _, err := q.FailureNoticesOwed(time.Time{}); err != nil {
		t.Errorf("FailureNoticesOwed: %v", err)
	}
	if err := q.Footprints(func(Footprint) {}); err != nil {
		t.Errorf("Footprints: %v", err)
	}
	if err := one(t, func(ids []string) ([]IDResult, error) { return q.Requeue(ids, ReplyClass{}) }, bad); !errors.Is(err, ErrRecordDamaged) {
		t.Errorf("Requeue(damaged) = %v, want ErrRecordDamaged", err)
	}
	if p := q.Check(); len(p) != 1 || !strings.Contains(p[0].Error(), "dead letter "+bad) {
		t.Errorf("Check = %v; want the damaged dead letter named", p)
	}
	if n, err := q.PurgeDead(time.Hour); err != nil || n != 0 {
		t.Errorf("PurgeDead(1h) = %d, %v; want none (the good one is younger, the damaged one's age unknown)", n, err)
	}
	if res, err := q.RequeueAll(ReplyClass{}); err != nil || len(res) != 1 || res[0].ID != good {
		t.Errorf("RequeueAll = %+v, %v; want the good one only", res, err)
	}
	if err := one(t, q.DeleteDead, bad); err != nil {
		t.Fatalf("DeleteDead(damaged): %v", err)
	}
	if _, err := io.ReadAll(q.Body(bad)); !errors.Is(err, ErrNotFound) {
		t.Errorf("body after DeleteDead: %v", err)
	}
	// The good message is queued again; the cleanup check must be clean.
}

// TestDamagedArchiveRecordDoesNotBlockRecord: a message leaves the queue
// a second time (dead, requeued, delivered) while the archive record of
// its first leaving does not decode. Replacing that record used to fail
// the Record of the delivery, so the relay's 250 was never stored and
// the message would have been sent again at every attempt.
func TestDamagedArchiveRecordDoesNotBlockRecord(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "again\r\n", "a@x.org")
	fail(t, q, reply550, "a@x.org")
	scribble(t, q, bucketArchive, []byte(id), flip(0))
	if err := one(t, func(ids []string) ([]IDResult, error) { return q.Requeue(ids, ReplyClass{}) }, id); err != nil {
		t.Fatal(err)
	}
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered}}); err != nil {
		t.Fatalf("Record of the delivery: %v", err)
	}
	if lk, err := q.Lookup(id); err != nil || lk.Archived == nil || lk.Archived.Fate != FateDelivered {
		t.Errorf("Lookup after delivery: %+v, %v", lk, err)
	}
	// The cleanup check finds no stale index entry.
}

// TestDamagedNoticeRecordSkipsOnlyItsMessage: one notice record that does
// not decode used to make FailureNoticesOwed fail, so that no sender got
// a failure notice any more. Now only its own message is passed over (a
// notice may have gone out for it already).
func TestDamagedNoticeRecordSkipsOnlyItsMessage(t *testing.T) {
	q, _ := openTest(t, Options{})
	for _, rcpt := range []string{"a@x.org", "b@x.org"} {
		put(t, q, "x\r\n", rcpt)
		fail(t, q, reply550, rcpt)
	}
	dead, err := q.ListDead()
	if err != nil || len(dead) != 2 {
		t.Fatal(dead, err)
	}
	if err := q.commit.commit(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNotices).Put([]byte(dead[0].ID), []byte("{garbage"))
	}); err != nil {
		t.Fatal(err)
	}
	owed, err := q.FailureNoticesOwed(time.Time{})
	if err != nil || len(owed) != 1 || owed[0].ID != dead[1].ID {
		t.Errorf("FailureNoticesOwed = %v, %v; want only %s", owed, err, dead[1].ID)
	}
}

// TestUnreadableRecordIsForgottenOnceGone: Lease remembers the damaged
// records it skipped (to log each once and to keep NextDue from waking
// delivery for them), and that set used to keep every ID for as long as
// the process ran, after delete or expire had taken the record away.
func TestUnreadableRecordIsForgottenOnceGone(t *testing.T) {
	q, _ := openTest(t, Options{})
	deleted := put(t, q, "one\r\n", "a@x.org")
	expired := put(t, q, "two\r\n", "b@x.org")
	for _, id := range []string{deleted, expired} {
		scribble(t, q, bucketMessages, []byte(id), flip(0))
	}
	if ls, err := q.Lease(10); err != nil || len(ls) != 0 {
		t.Fatalf("Lease = %d leases, %v; want none", len(ls), err)
	}
	if !q.leases.unreadable([]byte(deleted)) || !q.leases.unreadable([]byte(expired)) {
		t.Fatal("Lease did not note the damaged records")
	}
	if err := one(t, q.Delete, deleted); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Expire, expired); err != nil {
		t.Fatal(err)
	}
	q.leases.mu.Lock()
	left := len(q.leases.warned)
	q.leases.mu.Unlock()
	if left != 0 {
		t.Errorf("%d IDs still remembered as unreadable after their records were deleted and expired", left)
	}
}
