package delivery

import (
	"strings"
	"sync"
	"time"
)

// noticeLimit caps the notices relayq sends to one address in an hour
// ([notify] max_per_hour), so that a run of failures (a script mailing
// thousands of bad addresses, a relay refusing everything with a 5xx)
// cannot turn into thousands of notices to one sender, or to the
// postmaster. Each address has a window of an hour from its first notice;
// within it, notices past the cap are withheld (queue.WithholdNotice: the
// dead letters stay, `relayq dead list` shows them) and logged once per
// window. Windows are kept in memory: a restart starts them again.
type noticeLimit struct {
	max int // 0: no cap
	mu  sync.Mutex
	to  map[string]*noticeWindow
}

type noticeWindow struct {
	start    time.Time
	sent     int
	withheld int
}

// noticeWindowLen is the length of a window.
const noticeWindowLen = time.Hour

// noticeWindowsPruneAt is how many windows are kept before those that
// ended are dropped.
const noticeWindowsPruneAt = 4096

func newNoticeLimit(max int) *noticeLimit {
	return &noticeLimit{max: max, to: map[string]*noticeWindow{}}
}

// take reports whether a notice to addr may go at now, counting it if so.
// When it may not, first is true for the first notice withheld in addr's
// window, and withheld counts them so far.
func (l *noticeLimit) take(addr string, now time.Time) (ok, first bool, withheld int) {
	if l == nil || l.max <= 0 {
		return true, false, 0
	}
	key := strings.ToLower(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.to[key]
	if w == nil || now.Sub(w.start) >= noticeWindowLen || now.Before(w.start) {
		if w == nil && len(l.to) >= noticeWindowsPruneAt {
			l.prune(now)
		}
		w = &noticeWindow{start: now}
		l.to[key] = w
	}
	if w.sent < l.max {
		w.sent++
		return true, false, 0
	}
	w.withheld++
	return false, w.withheld == 1, w.withheld
}

// prune drops the windows that ended. l.mu is held.
func (l *noticeLimit) prune(now time.Time) {
	for k, w := range l.to {
		if now.Sub(w.start) >= noticeWindowLen {
			delete(l.to, k)
		}
	}
}
