package queue

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta     = []byte("meta")
	bucketMessages = []byte("messages")
	bucketBodies   = []byte("bodies")
	bucketSchedule = []byte("schedule")
	bucketDead     = []byte("dead")
	allBuckets     = [][]byte{bucketMeta, bucketMessages, bucketBodies, bucketSchedule, bucketDead, bucketArchive, bucketNotices, bucketKeys}

	keyVersion = []byte("version")
	// formatVersion is the file's format: "3" since the counters keep no
	// tally per message (counters.go) and the archive no time index
	// (archive.go), "2" since message records are compact
	// (message_record.go). A file of version "1" holds JSON records, which
	// are read as they are; one of "2" holds a tally per message and the
	// time index, which Open deletes. Open marks either "3", so that an
	// older relayq refuses the file ("unknown queue format version")
	// instead of sitting on its messages (a relayq of "1" would take every
	// compact record for damage and never lease it) or getting its
	// counts wrong (one of "2" would find no tally to take away when a
	// message leaves).
	formatVersion = []byte("3")
	olderVersions = []string{"1", "2"}
	// keyLeases marks a file whose records hold no leases. Files written
	// before leases moved to memory get their leases cleared once at Open.
	keyLeases      = []byte("leases")
	leasesInMemory = []byte("memory")
)

// chunkSize bounds one body value (body.go). bbolt stores a value larger than a page in
// contiguous overflow pages; keeping chunks well under a megabyte keeps the
// freelist from fragmenting and a read of the body bounded in memory.
const chunkSize = 256 << 10

// appendFill is the FillPercent of buckets whose new keys go at their
// end (message IDs and times grow): their leaves are split full, where
// bbolt's default of 0.5 leaves every page of a bucket filled in order half
// empty. A leaf that takes a key in its middle later is split again, into
// single pages, like any other.
const appendFill = 1.0

// Options configures Open. The zero value is usable.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// database before failing with ErrLocked. Zero means 1s.
	LockTimeout time.Duration
	// LeaseTimeout is how long a worker holds a leased message before it is
	// due again. Zero means 15 minutes.
	LeaseTimeout time.Duration
	// MaxSize caps the database file in bytes; Put fails with ErrFull when a
	// commit would grow it further. Zero means no cap.
	MaxSize int64
	// MaxBatch caps how many changes share one commit. Zero means 1000.
	MaxBatch int
	// Now is the clock; nil means time.Now. Tests inject their own.
	Now func() time.Time
	// Logger receives what the store has to say; nil means slog.Default().
	Logger *slog.Logger
	// MinFree is the free space (bytes) kept on the file system holding the
	// database: Put refuses with ErrFull below it, and a reserve of up to
	// 8 MiB is kept for recording outcomes (space.go). Zero keeps none.
	MinFree int64
	// HistoryRetention is how long the record of a message that left the
	// queue is kept (archive.go). Zero means DefaultHistoryRetention;
	// negative keeps none.
	HistoryRetention time.Duration
	// HistoryMaxSize bounds the bytes the history of messages that left
	// the queue takes in the file: past it the oldest records are pruned
	// before their retention (archive_bound.go). Zero means no bound.
	HistoryMaxSize int64
	// CompactFree is the room in free pages at which the store rewrites
	// its file without them while it runs, when they are also three
	// times the pages in use (compact_live.go). Zero turns it off.
	CompactFree int64
	// IdempotencyWindow is how long PutOnce remembers a key (keys.go).
	// Zero means DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
	// Claim is the claim ClaimFile took on this file, or nil. Open then
	// leaves the preparing of the file to the claim; the caller keeps the
	// claim, and releases it after Close (claim.go).
	Claim *Claim

	// syncFreelist has bbolt write its freelist at every commit instead
	// of rebuilding it at Open, and openBolt skip its walk: only
	// BenchmarkStorage sets it, to weigh the two (see boltOptions).
	syncFreelist bool
}

// Queue is an open store. Its methods are safe for concurrent use.
type Queue struct {
	db     *liveDB // livedb.go: the open file, which online compaction replaces
	opts   Options
	commit *committer
	ids    idSource
	log    *slog.Logger

	wakeMu sync.Mutex
	wake   chan struct{} // closed and replaced when something becomes due sooner

	leases  leaseTable  // lease.go: in memory only
	stale   staleTable  // lease.go: schedule entries of missing messages being dropped
	badKeys damagedKeys // damage.go: damaged keys already logged

	inflight      *inflight // inflight.go: nil when it could not be opened
	interruptMu   sync.Mutex
	interruptedBy map[string]bool // IDs out for delivery when the last run stopped

	space *space  // space.go: headroom on the file system
	cap   sizeCap // sizecap.go: Put refused without a commit at MaxSize

	history historySize // archive_bound.go: the history's size as the pruner knows it
	given   givenBack   // giveback.go: free pages whose disk blocks were given back

	damage  *damageSet  // counters.go: records found damaged since Open
	auditor *background // counters.go: looks for them once after Open

	pages  *pageWalk   // pagewalk.go: the walk of every page after Open
	walker *background // runs it, when Open did not walk the file first

	pruner  *background // deletes archive records past their retention
	trimmer *background // releases mapped pages (mapped.go)
	spacer  *background // allocates a released reserve again (space.go)
	giver   *background // gives the blocks of free pages back (giveback.go)
	packer  *background // compacts the file once it is mostly free pages (compact_live.go)
	// passes is held by a GiveBack pass and by a compaction, for all of
	// it: a pass must not punch one file with what it learnt of another.
	// Close takes it too, and sets closed: a compaction asked for on the
	// control socket never runs into, or after, the closing of the file.
	passes sync.Mutex
	closed bool
	// closing is closed when Close begins: a copy under way stops there
	// (compact_live.go) rather than hold the stop up.
	closing     chan struct{}
	closingOnce sync.Once
	// compactEvery is how often compactLoop looks: compactInterval when
	// 0; tests set less.
	compactEvery time.Duration
}

// Open opens (creating it if needed) the store at path. It takes bbolt's
// exclusive file lock: a second process on the same file gets ErrLocked
// after Options.LockTimeout. Leases left by a previous run are released.
// A path that is a directory fails with an error matching syscall.EISDIR,
// not ErrDamaged: nothing is damaged, the path is wrong.
func Open(path string, opts Options) (*Queue, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.LeaseTimeout <= 0 {
		opts.LeaseTimeout = 15 * time.Minute
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HistoryRetention == 0 {
		opts.HistoryRetention = DefaultHistoryRetention
	}
	if opts.IdempotencyWindow <= 0 {
		opts.IdempotencyWindow = DefaultIdempotencyWindow
	}
	dir := filepath.Dir(path)
	if opts.Claim != nil {
		// ClaimFile made the directory and prepared the file.
		if err := opts.Claim.check(path); err != nil { // claim.go
			return nil, fmt.Errorf("queue: open %s: %w", path, err)
		}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("queue: open %s: %w", path, err)
		}
		if err := prepareFile(path, opts.Now(), opts.Logger); err != nil { // prepare.go
			return nil, fmt.Errorf("queue: open %s: %w", path, err)
		}
	}
	_, statErr := os.Stat(path)
	creating := errors.Is(statErr, os.ErrNotExist)

	db, unwalked, err := openBolt(path, boltOptions(opts))
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("queue: open %s: %w (is another relayq serve running?)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	removeCompactLeftovers(path) // compact_live.go: bbolt's lock is ours, no copy is being made
	if creating {
		// The new file's directory entry must survive a crash too.
		if err := syncDir(dir); err != nil {
			db.Close()
			return nil, fmt.Errorf("queue: open %s: %w", path, err)
		}
	}
	q := &Queue{db: newLiveDB(db, path), closing: make(chan struct{}), opts: opts, log: opts.Logger, wake: make(chan struct{}), given: givenBack{keep: giveBackKeep, min: giveBackMin},
		damage: newDamageSet(), pages: walkedAlready()}
	if unwalked {
		q.pages = &pageWalk{done: make(chan struct{}), found: make(chan error, 1)} // pagewalk.go
	}
	if err := q.safeInit(); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	if err := buildCounters(db); err != nil { // counters.go: once, for a file from before them
		db.Close()
		return nil, fmt.Errorf("queue: open %s: counters: %w", path, err)
	}
	for _, drop := range formatTwoLeftovers {
		if err := fullErr(drop.fn(db)); errors.Is(err, ErrFull) {
			opts.Logger.Warn("no room to delete what an older relayq kept in the queue file; the next start tries again", "part", drop.what, "err", err)
		} else if err != nil {
			db.Close()
			return nil, fmt.Errorf("queue: open %s: %s: %w", path, drop.what, err)
		}
	}
	q.startInflight(path + inflightSuffix)
	q.space = newSpace(path, opts.MinFree, q.fileFree)
	q.cap = sizeCap{limit: opts.MaxSize, room: q.capRoom, now: opts.Now}
	q.commit = newCommitter(q.db, opts.MaxBatch, q.releaseReserve, q.notify, q.inflight.endAll)
	if err := q.trimMappedPages(); err != nil {
		q.log.Debug("cannot release mapped pages", "err", err)
	}
	q.trimmer = runBackground(q.trimLoop)
	if unwalked {
		q.walker = runBackground(func(stop <-chan struct{}) { q.walkPages(stop, q.startReaders) })
	} else {
		q.startReaders()
	}
	if q.space.reserveSize > 0 {
		if _, err := q.space.restore(); err != nil {
			q.log.Warn("cannot allocate the queue's reserve; intake is refused until it can be", "err", err)
		}
		q.spacer = runBackground(q.spaceLoop)
	}
	return q, nil
}

// startReaders starts what reads the whole file in the background: the
// history pruner, the give-back of free pages' blocks and the audit of the
// records. After an Open that did not walk the file first, the walk after
// Open starts them once it has read every page (pagewalk.go).
func (q *Queue) startReaders() {
	q.startPruner()
	q.giver = runBackground(q.giveBackLoop)
	q.auditor = runBackground(q.auditLoop) // counters.go
	q.packer = runBackground(q.compactLoop)
}

// boltOptions are the settings relayq's durability rests on; see
// reliability.md §2. NoSync and NoGrowSync stay false: every commit is
// fdatasynced before it returns.
func boltOptions(opts Options) *bolt.Options {
	return &bolt.Options{
		Timeout:         opts.LockTimeout,
		NoSync:          false,
		NoGrowSync:      false,
		NoFreelistSync:  !opts.syncFreelist, // a queue grows and shrinks; don't write the whole freelist on every commit
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 64 << 20, // fewer remaps, which wait for every reader
		MaxSize:         int(opts.MaxSize),
	}
}

// formatTwoLeftovers delete what a file of format 2 kept and format 3
// reads no more, at Open. Nothing reads it, so a disk too full to commit a
// deletion leaves it for the next Open rather than keep relayq from
// starting.
var formatTwoLeftovers = []struct {
	what string
	fn   func(*bolt.DB) error
}{
	{"counters", dropMessageTallies},  // counters.go
	{"history", dropArchiveTimeIndex}, // archive.go
}

// init creates the buckets, checks the format version and releases leases a
// crashed run left behind.
func (q *Queue) init() error {
	return q.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil || slices.Contains(olderVersions, string(v)):
			if err := meta.Put(keyVersion, formatVersion); err != nil {
				return err
			}
		case string(v) != string(formatVersion):
			return fmt.Errorf("unknown queue format version %q (this relayq knows %q)", v, formatVersion)
		}
		if string(meta.Get(keyLeases)) == string(leasesInMemory) {
			return nil
		}
		if err := q.clearStoredLeases(tx); err != nil {
			return err
		}
		return meta.Put(keyLeases, leasesInMemory)
	})
}

// clearStoredLeases converts a file from before leases moved to memory:
// a record's stored lease is dropped and its schedule entry, which sat at
// the lease's end, moves back to its next attempt. It runs once per file.
func (q *Queue) clearStoredLeases(tx *bolt.Tx) error {
	type storedLease struct {
		LeasedUntil time.Time `json:"leased_until"`
	}
	var leased []*Message
	err := tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
		var l storedLease
		if err := json.Unmarshal(v, &l); err != nil || l.LeasedUntil.IsZero() {
			return nil // unreadable records are `queue check`'s business
		}
		m, err := decodeMessage(v)
		if err != nil {
			return nil
		}
		if err := tx.Bucket(bucketSchedule).Delete(scheduleKey(l.LeasedUntil, m.ID)); err != nil {
			return err
		}
		leased = append(leased, m)
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range leased {
		if err := putMessage(tx, m); err != nil {
			return err
		}
		if !m.Held {
			if err := tx.Bucket(bucketSchedule).Put(scheduleKey(m.NextAttempt, m.ID), nil); err != nil {
				return err
			}
		}
	}
	if len(leased) > 0 {
		q.log.Info("released leases left by the previous run", "count", len(leased))
	}
	return nil
}

// Close waits for pending commits and closes the database.
func (q *Queue) Close() error {
	q.closingOnce.Do(func() { close(q.closing) })
	q.walker.halt() // first: it starts the others
	q.packer.halt() // next: it replaces the file the others use
	q.pruner.halt()
	q.trimmer.halt()
	q.giver.halt()
	q.auditor.halt()
	q.spacer.halt()
	q.passes.Lock()
	q.closed = true
	q.passes.Unlock()
	q.commit.close()
	if err := q.inflight.close(); err != nil {
		q.log.Warn("cannot close the in-flight journal", "err", err)
	}
	q.saveFreelist() // freelist.go: the next Open need not walk the file
	return q.db.raw().Close()
}

// Path is the database file.
func (q *Queue) Path() string { return q.db.Path() }

// Put stores a new message and returns its ID once the transaction holding it
// has committed. The body must already be normalised (CRLF line endings).
// The ID is env.ID when set (from NewID; one in use is an error), else a
// new one. Put neither keeps nor reads body or env once it has returned,
// whatever it returns: the caller may reuse their memory at once (bbolt
// copies the body into its pages at the commit, and a change function
// never runs after its commit has answered).
func (q *Queue) Put(ctx context.Context, env Envelope, body []byte) (string, error) {
	id, _, err := q.put(ctx, env, body, nil)
	return id, err
}

// put is Put; guard, when not nil, runs first in the same transaction:
// when it returns a non-empty ID, the message is not stored and that ID
// is returned with replayed set (keys.go).
func (q *Queue) put(ctx context.Context, env Envelope, body []byte, guard func(tx *bolt.Tx, id string) (string, error)) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if len(env.Recipients) == 0 {
		return "", false, errors.New("queue: put: no recipients")
	}
	if err := q.space.admit(); err != nil {
		return "", false, fmt.Errorf("queue: put: %w", err)
	}
	if err := q.cap.admit(int64(len(body))); err != nil {
		return "", false, fmt.Errorf("queue: put: %w", err)
	}
	now := q.opts.Now()
	id := env.ID
	if id == "" {
		id = q.ids.next(now)
	} else if !ValidID(id) {
		return "", false, fmt.Errorf("queue: put: %q is not a queue ID", id)
	}
	if env.RecipientDSN != nil && len(env.RecipientDSN) != len(env.Recipients) {
		return "", false, fmt.Errorf("queue: put: %d recipient DSN requests for %d recipients", len(env.RecipientDSN), len(env.Recipients))
	}
	m := newMessage(id, env, body, now)
	for i := range env.RecipientDSN {
		m.Recipients[i].DSN = env.RecipientDSN[i]
	}
	record, err := encodeMessage(m) // message_record.go
	if err != nil {
		return "", false, fmt.Errorf("queue: put: %w", err)
	}
	var replayed string
	err = q.commit.commit(func(tx *bolt.Tx) error {
		replayed = ""
		if guard != nil {
			prior, err := guard(tx, m.ID)
			if err != nil || prior != "" {
				replayed = prior
				return err
			}
		}
		if env.ID != "" && tx.Bucket(bucketMessages).Get([]byte(id)) != nil {
			return fmt.Errorf("%s is in use", id)
		}
		if err := putBody(tx, m.ID, body); err != nil {
			return err
		}
		messages, sched := tx.Bucket(bucketMessages), tx.Bucket(bucketSchedule)
		messages.FillPercent, sched.FillPercent = appendFill, appendFill
		if err := messages.Put([]byte(m.ID), record); err != nil {
			return err
		}
		if err := countMessage(tx, m, newMessageTally); err != nil { // counters.go
			return err
		}
		return sched.Put(scheduleKey(m.NextAttempt, m.ID), nil)
	})
	if errors.Is(err, ErrFull) {
		q.space.noteFull()
		q.cap.noteFailed(err, int64(len(body)))
	}
	if err != nil {
		return "", false, fmt.Errorf("queue: put: %w", err)
	}
	if replayed != "" {
		return replayed, true, nil
	}
	// What the file may have grown by: the pages written, twice over
	// for bbolt's copies on write and page rounding.
	q.space.used(2*int64(len(body)+len(record)) + 16<<10)
	return m.ID, false, nil // the commit woke delivery (committer.wake)
}

// Get returns the message record for id. For a record that does not
// decode it returns the stand-in the listings show (Message.Damaged) with
// an error matching ErrRecordDamaged.
func (q *Queue) Get(id string) (*Message, error) {
	var m *Message
	err := q.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = getMessage(tx, id)
		if errors.Is(err, ErrRecordDamaged) {
			_, why := decodeMessage(tx.Bucket(bucketMessages).Get([]byte(id)))
			m = damaged(tx, []byte(id), why) // as List shows it
			q.damage.note(false, id)
		}
		return err
	})
	if err != nil {
		return m, err
	}
	return q.leasedUntil(m), nil
}

// List returns every queued message, oldest first.
func (q *Queue) List() ([]*Message, error) {
	var out []*Message
	err := q.db.View(func(tx *bolt.Tx) (err error) {
		out, err = messagesIn(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	for _, m := range out {
		q.leasedUntil(m)
		if m.Damaged != "" {
			q.damage.note(false, m.ID)
		}
	}
	return out, nil
}

// messagesIn decodes every message tx holds, oldest first. A record that
// does not decode is in the list as a stand-in (Message.Damaged).
func messagesIn(tx *bolt.Tx) ([]*Message, error) {
	var out []*Message
	b := tx.Bucket(bucketMessages)
	if b == nil {
		return nil, nil // a file relayq serve never opened
	}
	err := b.ForEach(func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			m = damaged(tx, k, err) // listed, so that an operator sees it
		} else {
			withFlush(tx, m) // flush.go
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// ListDead returns every dead letter, oldest first. One whose record does
// not decode is in the list as a stand-in (DeadLetter.Damaged).
func (q *Queue) ListDead() ([]*DeadLetter, error) {
	var out []*DeadLetter
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			d, err := decodeDead(v)
			if err != nil {
				d = damagedDead(tx, k, err) // listed, so that an operator sees it
				q.damage.note(true, d.ID)
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: list dead: %w", err)
	}
	return out, nil
}

// Counts is a cheap summary of the store.
type Counts struct {
	Messages int
	Dead     int
}

// Count returns how many messages and dead letters the store holds.
func (q *Queue) Count() (Counts, error) {
	var c Counts
	err := q.db.View(func(tx *bolt.Tx) error {
		c.Messages = tx.Bucket(bucketMessages).Stats().KeyN
		c.Dead = tx.Bucket(bucketDead).Stats().KeyN
		return nil
	})
	return c, err
}

// Stats reports how well group commit is working.
type Stats struct {
	Commits int64 // read-write transactions committed (each is two fdatasyncs)
	Changes int64 // changes (Put, lease, record, …) those commits carried
}

// Stats returns the commit counters since Open.
func (q *Queue) Stats() Stats {
	return Stats{Commits: q.commit.commits.Load(), Changes: q.commit.changes.Load()}
}

// Check runs bbolt's consistency check and relayq's own: every message has
// a schedule entry and a body, every schedule entry and body belongs to a
// message or dead letter, and every archive record has its index entry. It
// returns every problem found. CheckFile does the same offline.
func (q *Queue) Check() []error {
	var problems []error
	err := q.db.View(func(tx *bolt.Tx) error {
		problems = checkTx(tx) // maintenance.go
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	return problems
}

// Ping runs an empty read through the committer, after the changes queued
// before it have committed: it returns only when the store answers, which
// makes it a liveness check (a watchdog runs it with a bound of its own).
// ErrClosed once the queue is closed.
func (q *Queue) Ping() error {
	return q.commit.read(func(*bolt.Tx) error { return nil })
}

// Changed returns a channel that is closed when a message may have become
// due sooner than before (a Put, a Release, a rescheduled attempt). Take a
// new channel after each wake-up.
func (q *Queue) Changed() <-chan struct{} {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	return q.wake
}

func (q *Queue) notify() {
	q.wakeMu.Lock()
	close(q.wake)
	q.wake = make(chan struct{})
	q.wakeMu.Unlock()
}

// NextDue returns when the earliest message not held by a worker is due,
// or the earliest lease runs out if that is sooner, and false when nothing
// is scheduled. Messages Lease found unreadable (damaged records) are left
// out: they are never due, and counting them would wake delivery at once,
// again and again. So are schedule entries of missing messages while they
// are being dropped; after a failed drop they are due when it is tried
// again.
func (q *Queue) NextDue() (time.Time, bool) {
	var due time.Time
	var ok bool
	now := q.opts.Now()
	earlier := func(t time.Time) {
		if !ok || t.Before(due) {
			due, ok = t, true
		}
	}
	_ = q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSchedule).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			at, id, ok := splitTimeKey(k)
			if !ok {
				q.skipDamagedKey(bucketSchedule, k)
				continue
			}
			if retry, ok := q.stale.retryAt(k); ok {
				// Its drop is under way, or failed and waits: due
				// when the drop is to be tried again, not at once.
				if !retry.IsZero() {
					earlier(retry)
				}
				continue
			}
			if q.leases.unreadable(id) {
				continue
			}
			if until, leased := q.leases.until(string(id), now); leased {
				earlier(until)
				continue
			}
			earlier(at)
			return nil
		}
		return nil
	})
	return due, ok
}

func scheduleKey(t time.Time, id string) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	copy(k[8:], id)
	return k
}

// splitTimeKey splits a key of a bucket keyed by time ‖ id (the schedule,
// the archive's time index) into its time and ID. ok is false for a key
// too short to hold both, which only damage to the file's pages makes:
// whoever walks the bucket skips it (skipDamagedKey), and Check names it.
func splitTimeKey(k []byte) (t time.Time, id []byte, ok bool) {
	if len(k) <= 8 {
		return time.Time{}, nil, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))), k[8:], true
}

// dueAt is where a message sits in the schedule: its next attempt.
func (m *Message) dueAt() time.Time {
	return m.NextAttempt
}

// reschedule applies change to m and moves its schedule entry to match; a
// message that is (or becomes) held ends up with none.
func (q *Queue) reschedule(tx *bolt.Tx, m *Message, change func()) error {
	return q.rescheduleOver(tx, m, storedTallyOf(tx, m.ID), change) // counters.go
}

// rescheduleOver is reschedule for a caller that knows what the counts
// hold of m's stored record (before; counters.go).
func (q *Queue) rescheduleOver(tx *bolt.Tx, m *Message, before storedTally, change func()) error {
	sched := tx.Bucket(bucketSchedule)
	if err := sched.Delete(scheduleKey(m.dueAt(), m.ID)); err != nil {
		return err
	}
	change()
	if err := putMessageOver(tx, m, before); err != nil {
		return err
	}
	if m.Held {
		return nil // held messages stay out of the schedule until Unhold
	}
	return sched.Put(scheduleKey(m.dueAt(), m.ID), nil)
}

func getMessage(tx *bolt.Tx, id string) (*Message, error) {
	v := tx.Bucket(bucketMessages).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("queue: %s: %w", id, ErrNotFound)
	}
	m, err := decodeMessage(v)
	if err != nil {
		return nil, fmt.Errorf("queue: message %s: %w: %w", id, ErrRecordDamaged, err)
	}
	return withFlush(tx, m), nil // flush.go
}

// damaged is the stand-in listings show for the record of id that does
// not decode (err): its ID, when it was created (the ID says), the size
// of its stored body, StateDamaged.
func damaged(tx *bolt.Tx, id []byte, err error) *Message {
	return &Message{ID: string(id), Created: idTime(string(id)), Size: bodySize(tx, string(id)), Damaged: err.Error()}
}

func putMessage(tx *bolt.Tx, m *Message) error {
	return putMessageOver(tx, m, storedTallyOf(tx, m.ID)) // counters.go
}

// putMessageOver writes m's record over the stored one, whose tally the
// counts hold as before (counters.go).
func putMessageOver(tx *bolt.Tx, m *Message, before storedTally) error {
	v, err := encodeMessage(m) // message_record.go; leases live in memory (lease.go)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketMessages).Put([]byte(m.ID), v); err != nil {
		return err
	}
	if err := unflush(tx, m.ID); err != nil { // flush.go: the record says it now
		return err
	}
	return countMessage(tx, m, before) // counters.go
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
