package spool

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// Per-submitter limits, so that one runaway cron job can neither flood the
// relay nor fill the spool. Each submission is counted under one key:
//
//   - the rule for its systemd unit, if there is one ("unit cron.service":
//     every process of that unit together);
//   - else the rule for its uid, or for its user name;
//   - else Limits.Default, counted per uid. A TCP submission's uid is the
//     owner of the client's socket (caps.go); those whose owner could not
//     be looked up share one count, "uid -1" ("TCP submissions").
//
// Over a limit, MAIL FROM (or, once the size is known, the end of DATA) is
// answered 452 4.7.0: nothing is accepted, so nothing acknowledged is ever
// dropped. A message larger than a queued-bytes limit by itself gets 552
// 5.3.4, since waiting would not help. Maildrop files are counted under
// their owner's uid like the socket's submissions; as `relayq sendmail`
// already told its caller they were queued, one over a limit waits in the
// maildrop instead of being refused, and one the 552 would refuse is set
// aside (maildrop_policy.go).
//
// Counting:
//
//   - Queued bytes are the sizes of the key's messages in the queue (dead
//     letters aside), read from the store at most every bytesRefresh, plus
//     what was accepted since. They survive restarts, being in the store.
//   - Messages per hour is a sliding window kept in memory. At start it is
//     seeded from the messages of the last hour still in the store (queued
//     or dead), so a restart forgets only those already delivered.

// bytesRefresh is how old the queued-bytes figures may get before the store
// is read again. In between, accepted messages are added as they come, so
// a burst is held to the limit at once; delivered ones are subtracted at
// the next read.
const bytesRefresh = 5 * time.Second

// LimitKind says what a LimitRule matches.
type LimitKind string

const (
	LimitUID  LimitKind = "uid"  // Value is a uid in decimal
	LimitUser LimitKind = "user" // Value is a user name
	LimitUnit LimitKind = "unit" // Value is a systemd unit name
)

// Limit caps what one submitter may send; a zero field is no cap.
type Limit struct {
	MessagesPerHour int
	QueuedBytes     int64
}

// LimitRule gives its Limit to the submitters it matches.
type LimitRule struct {
	Kind  LimitKind
	Value string
	Limit
}

// Limits configures Options.Limits. The zero value limits nothing.
type Limits struct {
	// Default applies, per uid, to every submitter no rule matches.
	Default Limit
	Rules   []LimitRule
}

func (l Limits) any(f func(Limit) bool) bool {
	if f(l.Default) {
		return true
	}
	for _, r := range l.Rules {
		if f(r.Limit) {
			return true
		}
	}
	return false
}

// limiter applies Limits to submissions.
type limiter struct {
	rules map[string]Limit // key ("unit cron.service") → limit
	def   Limit
	rate  bool // some limit counts messages per hour
	bytes bool // some limit counts queued bytes
	q     *queue.Queue
	now   func() time.Time
	log   *slog.Logger

	scan sync.Mutex // one read of the store at a time

	mu       sync.Mutex
	seeded   bool
	sent     map[string][]time.Time // acceptances in the last hour, oldest first
	base     map[string]int64       // queued bytes per key at the last read
	scanning map[string]int64       // committed while that read went on
	added    map[string]int64       // committed since
	reserved map[string]int64       // being committed now
	scanned  time.Time
	refused  map[string]refusals // refusals since start, for status
}

// refusals counts what a key was refused.
type refusals struct {
	n    int64
	last time.Time
}

// newLimiter returns nil when l limits nothing.
func newLimiter(l Limits, q *queue.Queue, log *slog.Logger) *limiter {
	rate := l.any(func(x Limit) bool { return x.MessagesPerHour > 0 })
	bytes := l.any(func(x Limit) bool { return x.QueuedBytes > 0 })
	if !rate && !bytes {
		return nil
	}
	lim := &limiter{
		rules: make(map[string]Limit), def: l.Default, rate: rate, bytes: bytes, q: q, now: time.Now, log: log,
		sent: map[string][]time.Time{}, added: map[string]int64{}, reserved: map[string]int64{},
		refused: map[string]refusals{},
	}
	for _, r := range l.Rules {
		lim.rules[string(r.Kind)+" "+r.Value] = r.Limit
	}
	return lim
}

// carryFrom takes over old's counts: the acceptances of the last hour (if
// old counted them; else they are read from the store as at start) and the
// refusals. Either may be nil; it returns l.
func (l *limiter) carryFrom(old *limiter) *limiter {
	if l == nil || old == nil {
		return l
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	if old.rate {
		l.seeded = old.seeded
		for k, times := range old.sent {
			l.sent[k] = slices.Clone(times)
		}
	}
	maps.Copy(l.refused, old.refused)
	return l
}

// keyFor returns the key a submission is counted under and its limit.
func (l *limiter) keyFor(s queue.Submitter) (string, Limit) {
	uid := "uid " + strconv.Itoa(s.UID)
	candidates := []string{uid}
	if s.Unit != "" {
		candidates = []string{"unit " + s.Unit, uid}
	}
	if s.User != "" {
		candidates = append(candidates, "user "+s.User)
	}
	for _, k := range candidates {
		if lim, ok := l.rules[k]; ok {
			return k, lim
		}
	}
	return uid, l.def
}

// describe names a key for a reply: "uid 1000", "unit cron.service".
func describe(key string) string {
	if key == "uid -1" {
		return "TCP submissions"
	}
	return key
}

func replyRate(key string, limit int) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: fmt.Sprintf("Too many messages from %s: limit %d an hour, try again later", describe(key), limit)}
}

func replyQueuedBytes(key string, limit int64) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: fmt.Sprintf("Too much mail queued from %s: limit %d bytes, try again later", describe(key), limit)}
}

func replyOverAllowance(key string, limit int64) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: fmt.Sprintf("Message larger than the %d bytes %s may have queued", limit, describe(key))}
}

// check answers MAIL FROM: an error reply if s is over a limit already, or
// would be with a message of size bytes (0: size not announced).
func (l *limiter) check(s queue.Submitter, size int64) *smtp.SMTPError {
	if l == nil {
		return nil
	}
	key, lim := l.keyFor(s)
	l.prepare(lim)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.over(key, lim, size)
}

// admit is check at the end of DATA, with the size known; if s may send,
// the message is counted at once (so that concurrent sessions cannot all
// slip under a limit) and done must be called with the outcome of Put.
func (l *limiter) admit(s queue.Submitter, size int64) (done func(queued bool), refused *smtp.SMTPError) {
	if l == nil {
		return func(bool) {}, nil
	}
	key, lim := l.keyFor(s)
	l.prepare(lim)
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.over(key, lim, size); r != nil {
		return nil, r
	}
	now := l.now()
	if lim.MessagesPerHour > 0 {
		l.sent[key] = append(l.sent[key], now)
	}
	l.reserved[key] += size
	return func(queued bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.reserved[key] -= size
		if queued {
			l.added[key] += size
			return
		}
		if times := l.sent[key]; lim.MessagesPerHour > 0 {
			// Not queued: give the slot back (the latest with this time).
			for i := len(times) - 1; i >= 0; i-- {
				if times[i].Equal(now) {
					l.sent[key] = append(times[:i], times[i+1:]...)
					break
				}
			}
		}
	}, nil
}

// over reports whether key is over lim with another message of size bytes,
// and counts the refusal. l.mu is held.
func (l *limiter) over(key string, lim Limit, size int64) *smtp.SMTPError {
	r := l.exceeds(key, lim, size)
	if r != nil {
		l.refused[key] = refusals{n: l.refused[key].n + 1, last: l.now()}
	}
	return r
}

// exceeds is over without the counting. l.mu is held.
func (l *limiter) exceeds(key string, lim Limit, size int64) *smtp.SMTPError {
	if n := lim.MessagesPerHour; n > 0 && l.recent(key) >= n {
		l.log.Warn("submission refused: messages_per_hour", "limit_key", key, "limit", n)
		return replyRate(key, n)
	}
	if n := lim.QueuedBytes; n > 0 {
		if size > n {
			l.log.Warn("submission refused: larger than queued_bytes", "limit_key", key, "limit", n, "size", size)
			return replyOverAllowance(key, n)
		}
		if queued := l.queued(key); queued+size > n {
			l.log.Warn("submission refused: queued_bytes", "limit_key", key, "limit", n, "queued", queued, "size", size)
			return replyQueuedBytes(key, n)
		}
	}
	return nil
}

// queued is key's queued bytes as last read plus what came since. l.mu is
// held.
func (l *limiter) queued(key string) int64 {
	return l.base[key] + l.scanning[key] + l.added[key] + l.reserved[key]
}

// LimitUsage is what one submitter (a limit key) has used of its limits,
// for `relayq status`.
type LimitUsage struct {
	// Key names the submitter as replies do: "uid 1000", "user alice",
	// "unit cron.service", "TCP submissions".
	Key string
	// Limit is the key's limit; a zero field is no cap.
	Limit
	// MessagesLastHour counts the key's acceptances in the last hour, or
	// is -1 when no limit counts messages per hour.
	MessagesLastHour int
	// QueuedBytes is the size of the key's queued messages (read from the
	// store every few seconds), or -1 when no limit counts queued bytes.
	QueuedBytes int64
	// Refused counts submissions refused over a limit since the daemon
	// started, the last at LastRefused.
	Refused     int64
	LastRefused time.Time
}

// usage reports every key that has a rule of its own or anything counted.
func (l *limiter) usage() []LimitUsage {
	if l == nil {
		return nil
	}
	fresh := Limit{} // what prepare needs fresh: the bytes, if they count
	if l.bytes {
		fresh.QueuedBytes = 1
	}
	l.prepare(fresh)
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := map[string]bool{}
	for k := range l.rules {
		keys[k] = true
	}
	for _, m := range []map[string]int64{l.base, l.scanning, l.added, l.reserved} {
		for k, v := range m {
			if v != 0 {
				keys[k] = true
			}
		}
	}
	for k := range l.sent {
		keys[k] = true
	}
	for k := range l.refused {
		keys[k] = true
	}
	out := make([]LimitUsage, 0, len(keys))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		lim, ok := l.rules[k]
		if !ok {
			lim = l.def
		}
		u := LimitUsage{Key: describe(k), Limit: lim, MessagesLastHour: -1, QueuedBytes: -1, Refused: l.refused[k].n, LastRefused: l.refused[k].last}
		if l.rate {
			u.MessagesLastHour = l.recent(k)
		}
		if l.bytes {
			u.QueuedBytes = l.queued(k)
		}
		out = append(out, u)
	}
	return out
}

// recent counts key's acceptances in the last hour, dropping older ones.
// l.mu is held.
func (l *limiter) recent(key string) int {
	cut := l.now().Add(-time.Hour)
	times := l.sent[key]
	i := 0
	for i < len(times) && !times[i].After(cut) {
		i++
	}
	if i == len(times) {
		delete(l.sent, key)
		return 0
	}
	l.sent[key] = times[i:]
	return len(times) - i
}

// prepare reads the store when the figures lim needs are missing or stale:
// once for the hourly seed, and every bytesRefresh for queued bytes.
func (l *limiter) prepare(lim Limit) {
	l.mu.Lock()
	seeded := l.seeded
	need := !seeded || (lim.QueuedBytes > 0 && l.now().Sub(l.scanned) >= bytesRefresh)
	l.mu.Unlock()
	if !need {
		return
	}
	// While another session reads the store (40 ms for 10,000 messages),
	// the others go on with the figures they have, once there are any.
	if !l.scan.TryLock() {
		if seeded {
			return
		}
		l.scan.Lock()
	}
	defer l.scan.Unlock()
	l.mu.Lock()
	if l.seeded && (lim.QueuedBytes == 0 || l.now().Sub(l.scanned) < bytesRefresh) {
		l.mu.Unlock()
		return // another session read it meanwhile
	}
	// What commits from now on may or may not be in what the read sees;
	// it is counted apart until the read is in, then dropped: counted
	// twice for a moment rather than not at all.
	l.scanning, l.added = l.added, map[string]int64{}
	seeded = l.seeded
	l.mu.Unlock()

	base := map[string]int64{}
	recent := map[string][]time.Time{}
	seen := map[string]bool{}
	cut := l.now().Add(-time.Hour)
	err := l.q.Footprints(func(f queue.Footprint) {
		key, _ := l.keyFor(f.Submitter)
		if !f.Dead {
			base[key] += f.Size
		}
		if !seeded && l.rate && f.Created.After(cut) && !seen[f.ID] && f.Submitter.Via != queue.ViaNotice {
			seen[f.ID] = true
			recent[key] = append(recent[key], f.Created)
		}
	})

	l.mu.Lock()
	defer l.mu.Unlock()
	l.scanned = l.now()
	if err != nil {
		l.log.Error("limits: cannot read the queue; going on with the last figures", "err", err)
		for k, v := range l.scanning {
			l.added[k] += v
		}
		l.scanning = nil
		return
	}
	l.base, l.scanning = base, nil
	if !seeded {
		l.seeded = true
		for key, times := range recent {
			l.sent[key] = mergeTimes(times, l.sent[key])
		}
	}
}

// mergeTimes returns a and b in one list, oldest first.
func mergeTimes(a, b []time.Time) []time.Time {
	out := append(append([]time.Time(nil), a...), b...)
	slices.SortFunc(out, time.Time.Compare)
	return out
}
