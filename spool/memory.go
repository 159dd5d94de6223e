package spool

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// A memory budget for message bodies in flight, so that no local user can
// take intake down for the others by sending many large messages at once
// (issue 11 §3): each session holds the body it receives in memory until
// queue.Put has returned, and 50 connections of one uid sending 25 MiB each
// would otherwise make the daemon hold 1.25 GiB.
//
//   - Options.MaxMemory caps the bytes of body that all sessions together
//     hold. A body's buffer reserves from it as it grows, memChunk at a
//     time (one lock per 64 KiB, none per write), and gives it all back
//     when Data returns: queued, refused or failed.
//   - One submitter (the key of its connection, caps.go: its uid, on the
//     socket and TCP alike) may hold at most half of the budget, or
//     one message of Options.MaxMessageSize if that is more, so that one
//     user's burst leaves the other half to everyone else.
//   - A reservation that does not fit waits, oldest session first: a
//     session that is younger than one already waiting does not take the
//     memory that one waits for. A waiter that gets nothing within
//     Options.MemoryWait in all (over every chunk of its body) is refused. When every session holding memory in
//     the way is itself waiting, none can ever finish, so the youngest of
//     them is refused at once and the older ones go on (wound-wait): a
//     burst larger than the budget gets some 250s and some refusals, never
//     only refusals.
//   - A refused message gets "452 4.3.1 Insufficient system storage" after
//     its final dot (go-smtp reads and discards the rest of the DATA), and
//     its client tries again later. The refusal is logged once a minute per
//     submitter with the count held back.
//
// The budget counts the bytes of the normalised body, in whole chunks. The
// daemon's memory for bodies is a small multiple of it: the buffer's spare
// capacity, the copy with the added headers and the queue's write each
// hold up to one more body while they last.

// memChunk is the unit in which a body reserves from the budget.
const memChunk = 64 << 10

// defaultMemoryWait is how long a reservation waits for memory when
// Options.MemoryWait is 0.
const defaultMemoryWait = 5 * time.Second

// memBudget is the memory budget of one Server. A nil *memBudget is no
// budget: every method then does nothing and every reservation succeeds.
type memBudget struct {
	total, share int64
	wait         time.Duration

	mu     sync.Mutex
	used   int64
	perKey map[string]int64
	holds  map[*memHold]struct{} // those holding memory or waiting for it
	seq    uint64
}

// newMemBudget returns nil (no budget) when total is 0. The budget is
// raised to hold one message of maxMessage (rounded up to a chunk), so a
// message the size limit lets through can always be taken when the
// daemon is otherwise idle.
func newMemBudget(total, maxMessage int64, wait time.Duration) *memBudget {
	if total <= 0 {
		return nil
	}
	if wait <= 0 {
		wait = defaultMemoryWait
	}
	ceiling := roundChunk(maxMessage)
	total = max(total, ceiling, memChunk)
	return &memBudget{
		total:  total,
		share:  max(total/2, min(ceiling, total), memChunk),
		wait:   wait,
		perKey: make(map[string]int64),
		holds:  make(map[*memHold]struct{}),
	}
}

func roundChunk(n int64) int64 { return (n + memChunk - 1) / memChunk * memChunk }

// memHold is one message's reservation.
type memHold struct {
	b       *memBudget
	key     string
	seq     uint64 // order of arrival: lower is older
	held    int64
	want    int64         // what a waiting reservation asks for
	waited  time.Duration // how long it has waited, in all
	waiting bool
	wounded bool          // refused by an older session's wait
	wake    chan struct{} // buffered: a release or a wound
}

// hold starts a reservation for one message submitted under key.
func (b *memBudget) hold(key string) *memHold {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return &memHold{b: b, key: key, seq: b.seq, wake: make(chan struct{}, 1)}
}

// inFlight returns the bytes reserved now and the budget; 0, 0 without a
// budget.
func (b *memBudget) inFlight() (used, total int64) {
	if b == nil {
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.total
}

// errNoMemory is what a normalizer's Write returns when the budget has no
// room for the body; errOverShare when the body is more than its
// submitter may ever hold.
var (
	errNoMemory  = errors.New("spool: no memory for the message body")
	errOverShare = errors.New("spool: message larger than a submitter's share of the memory budget")
)

// grow makes the reservation at least n bytes (rounded up to a chunk),
// waiting as the package comment says. A nil hold always succeeds.
func (h *memHold) grow(n int64) error {
	if h == nil || n <= h.held {
		return nil
	}
	b := h.b
	need := roundChunk(n) - h.held
	if h.held+need > b.share {
		return errOverShare
	}
	b.mu.Lock()
	b.holds[h] = struct{}{}
	for !h.wounded {
		if b.fits(h, need) && !b.olderWaiting(h) {
			h.waiting = false
			h.held += need
			b.used += need
			b.perKey[h.key] += need
			b.mu.Unlock()
			return nil
		}
		if !h.waiting {
			// Those already waiting look again: h waiting may leave
			// nobody able to free what they wait for.
			b.wakeWaiters()
		}
		h.waiting, h.want = true, need
		if b.fits(h, need) {
			// Only an older waiter is in the way: its turn first.
		} else if v := b.victim(h); v == h {
			break
		} else if v != nil {
			v.wounded = true
			v.signal()
		}
		left := b.wait - h.waited
		if left <= 0 {
			break
		}
		b.mu.Unlock()
		start := time.Now()
		t := time.NewTimer(left)
		select {
		case <-h.wake:
		case <-t.C:
		}
		t.Stop()
		b.mu.Lock()
		h.waited += time.Since(start)
	}
	h.waiting = false
	b.mu.Unlock()
	return errNoMemory
}

// release gives back everything h holds and wakes the waiters. A nil hold
// does nothing; releasing twice is harmless.
func (h *memHold) release() {
	if h == nil {
		return
	}
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.holds, h)
	if h.held == 0 {
		return
	}
	b.used -= h.held
	if b.perKey[h.key] -= h.held; b.perKey[h.key] <= 0 {
		delete(b.perKey, h.key)
	}
	h.held = 0
	b.wakeWaiters()
}

// wakeWaiters has every waiting reservation look again. b.mu is held.
func (b *memBudget) wakeWaiters() {
	for w := range b.holds {
		if w.waiting {
			w.signal()
		}
	}
}

func (h *memHold) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// fits reports whether need more bytes for h fit in the budget and in h's
// share. b.mu is held.
func (b *memBudget) fits(h *memHold, need int64) bool {
	return b.used+need <= b.total && b.perKey[h.key]+need <= b.share
}

// olderWaiting reports whether an older session waits for memory that h's
// reservation would take: any memory if it waits on the whole budget, its
// share if it has h's key. b.mu is held.
func (b *memBudget) olderWaiting(h *memHold) bool {
	for w := range b.holds {
		if !w.waiting || w.seq >= h.seq {
			continue
		}
		if b.used+w.want > b.total || (w.key == h.key && b.perKey[w.key]+w.want > b.share) {
			return true
		}
	}
	return false
}

// victim returns the session to refuse so that the waiting h can go on,
// when nothing else can free memory: every session holding memory in h's
// way (anyone's if the whole budget is used, h's key's if its share is) is
// waiting too. The youngest of those and h is refused (an older session
// never waits for a younger one that waits). Nil when some holder is still
// receiving or committing, or already refused (its release will wake h),
// and when h holds nothing and is the youngest: it waits for the others to
// sort themselves out. b.mu is held.
func (b *memBudget) victim(h *memHold) *memHold {
	global := b.used+h.want > b.total
	youngest := h
	for w := range b.holds {
		if w == h || w.held == 0 || (!global && w.key != h.key) {
			continue
		}
		if !w.waiting || w.wounded {
			return nil
		}
		if w.seq > youngest.seq {
			youngest = w
		}
	}
	if youngest == h && h.held == 0 {
		return nil
	}
	return youngest
}

// neverFits reports whether a message of size bytes (SIZE= at MAIL FROM)
// is more than one submitter may ever hold: it is refused at once with 552
// 5.3.4, since waiting would not help.
func (b *memBudget) neverFits(size int64) bool { return b != nil && size > b.share }

// logNoMemory logs a refusal for lack of memory, once a minute per
// submitter key, with the count of those held back.
func (s *Server) logNoMemory(log *slog.Logger, key string) {
	if ok, held := s.memLog.allow(key, time.Now()); ok {
		used, total := s.mem.inFlight()
		log.Warn("message refused: intake memory budget full", "submitter", key,
			"in_flight", used, "max_memory", total, "refused_since_last_logged", held)
	}
}
