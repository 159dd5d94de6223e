package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// Which messages were out for delivery when relayq last stopped without
// ending their leases (kill -9, a crash). Leases live in memory (lease.go),
// so the database cannot say; this journal next to it (<file>.inflight)
// can: a line "+ID" when a message is leased, "-ID" when its lease ends
// (for the outcomes one commit records, one write of all their lines, as
// soon as that commit is on disk: committer.ended).
// At Open the IDs still open were interrupted: their next attempt may send
// again what the relay already took, and is marked so (Lease.Interrupted,
// logged as possible_duplicate).
//
// The lines are written, never synced: the writes of a killed process are
// in the page cache and outlive it, which is the case that matters, and
// they cost a write(2) each instead of a commit. After a power loss the
// journal may be short, and a redelivery then goes unmarked. Nothing but
// that mark depends on it; if it cannot be written it is logged once and
// left off.

// inflightSuffix names the journal after the database file.
const inflightSuffix = ".inflight"

// inflightCompactAt is the journal size past which it is rewritten with
// only the leases still open.
const inflightCompactAt = 256 << 10

// inflightRoom is the space allocated for the journal ahead of its writes
// (beyond its end, which stays where it is), so that on a full disk it
// still takes the lines of the leases that matter most then: those whose
// outcome cannot be recorded (delivery/record.go).
const inflightRoom = inflightCompactAt + 64<<10

type inflight struct {
	mu   sync.Mutex
	f    *os.File // nil once off
	open map[string]bool
	size int64
	off  func(error) // reports why the journal stopped, once
	// writes counts the write(2) calls made, for the tests and
	// benchmarks that guard how many a delivery costs.
	writes int
}

// openInflight reads what the journal at path says was interrupted, then
// starts it afresh. An existing journal keeps its mode through the
// O_TRUNC open, so it is set to fileMode like the queue file, with a
// warning (log); one that cannot be is not used.
func openInflight(path string, off func(error), log *slog.Logger) (*inflight, map[string]bool, error) {
	interrupted, err := readInflight(path)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, fileMode)
	if err != nil {
		return nil, interrupted, fmt.Errorf("queue: in-flight journal: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = fixMode("the in-flight journal", path, fi.Mode().Perm(), func() error { return f.Chmod(fileMode) }, log)
	}
	if err != nil {
		f.Close()
		return nil, interrupted, fmt.Errorf("queue: in-flight journal: %w", err)
	}
	preallocate(f)
	return &inflight{f: f, open: map[string]bool{}, off: off}, interrupted, nil
}

// preallocate gives the journal its room; where the file system cannot,
// writes take their chances as they come.
func preallocate(f *os.File) {
	_ = fallocate(f, inflightRoom, true)
}

// readInflight returns the IDs leased and not released in the journal at
// path; none when there is no journal.
func readInflight(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: in-flight journal: %w", err)
	}
	defer f.Close()
	open := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "+"):
			open[line[1:]] = true
		case strings.HasPrefix(line, "-"):
			delete(open, line[1:])
		}
		// Anything else is a line cut short by the crash: skipped.
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("queue: in-flight journal: %w", err)
	}
	return open, nil
}

// begin notes that ids were leased, in one write.
func (j *inflight) begin(ids []string) {
	if j == nil || len(ids) == 0 {
		return
	}
	var b strings.Builder
	for _, id := range ids {
		b.WriteByte('+')
		b.WriteString(id)
		b.WriteByte('\n')
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, id := range ids {
		j.open[id] = true
	}
	j.write(b.String())
}

// end notes that id's lease ended.
func (j *inflight) end(id string) {
	j.endAll([]string{id})
}

// endAll notes that the leases of ids ended, in one write: the outcomes
// one commit recorded (committer.ended).
func (j *inflight) endAll(ids []string) {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var b strings.Builder
	for _, id := range ids {
		if !j.open[id] {
			continue
		}
		delete(j.open, id)
		b.WriteByte('-')
		b.WriteString(id)
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		return
	}
	j.write(b.String())
	if j.size > inflightCompactAt {
		j.compact()
	}
}

// write appends s; j.mu is held.
func (j *inflight) write(s string) {
	if j.f == nil {
		return
	}
	n, err := j.f.WriteString(s)
	j.size += int64(n)
	j.writes++
	if err != nil {
		j.stop(err)
	}
}

// compact starts the journal again with the leases still open; j.mu is
// held. A crash in between loses their marks, no more.
func (j *inflight) compact() {
	if err := j.f.Truncate(0); err != nil {
		j.stop(err)
		return
	}
	j.size = 0
	preallocate(j.f)
	var b strings.Builder
	for id := range j.open {
		b.WriteByte('+')
		b.WriteString(id)
		b.WriteByte('\n')
	}
	j.write(b.String())
}

func (j *inflight) stop(err error) {
	j.f.Close()
	j.f = nil
	if j.off != nil {
		j.off(err)
	}
}

// close closes the journal. Leases still open stay in it, as interrupted:
// their workers did not finish before the store closed.
func (j *inflight) close() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// startInflight reads the journal of the last run and starts this run's.
// Without a journal the store works all the same, only unmarked.
func (q *Queue) startInflight(path string) {
	j, interrupted, err := openInflight(path, func(err error) {
		q.log.Error("in-flight journal stopped; redeliveries after a crash will not be marked", "path", path, "err", err)
	}, q.log)
	if err != nil {
		q.log.Warn("no in-flight journal; redeliveries after a crash will not be marked", "path", path, "err", err)
	}
	q.inflight, q.interruptedBy = j, interrupted
	if n := len(interrupted); n > 0 {
		q.log.Warn("messages were out for delivery when relayq last stopped; their next attempt may deliver them twice", "count", n)
	}
}

// interrupted reports whether id was out for delivery when the last run
// stopped. It stays so while the message is queued: whichever later
// attempt delivers may deliver it twice.
func (q *Queue) interrupted(id string) bool {
	q.interruptMu.Lock()
	defer q.interruptMu.Unlock()
	return q.interruptedBy[id]
}

// left forgets what memory holds of message id once it has left the
// queue (delivered, dead, deleted, expired): its interrupted mark, and
// its place among the records Lease found unreadable (lease.go), so that
// neither grows for as long as the process runs.
func (q *Queue) left(id string) {
	q.interruptMu.Lock()
	delete(q.interruptedBy, id)
	q.interruptMu.Unlock()
	q.leases.forget(id)
}
