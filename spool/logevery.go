package spool

import (
	"sync"
	"time"
)

// logEvery lets an event that repeats identically (a stale temporary
// directory that cannot be removed, a file the queue keeps refusing, one
// user's connections over the cap) reach the log once per interval, with
// the count of those held back, instead of once a second forever.
type logEvery struct {
	interval time.Duration

	mu   sync.Mutex
	seen map[string]*logCount
}

type logCount struct {
	last time.Time
	held int
}

// logEveryKeys is how many keys logEvery remembers before it forgets those
// quiet for an interval.
const logEveryKeys = 1024

// allow reports whether the event named key is to be logged at now, and
// how many of its repeats were held back since it last was.
func (l *logEvery) allow(key string, now time.Time) (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[string]*logCount)
	}
	c := l.seen[key]
	if c != nil && now.Sub(c.last) < l.interval {
		c.held++
		return false, 0
	}
	if c == nil {
		if len(l.seen) >= logEveryKeys {
			l.forget(now)
		}
		c = &logCount{}
		l.seen[key] = c
	}
	held, c.last, c.held = c.held, now, 0
	return true, held
}

// forget drops the keys quiet for an interval. l.mu is held.
func (l *logEvery) forget(now time.Time) {
	for k, c := range l.seen {
		if now.Sub(c.last) >= l.interval {
			delete(l.seen, k)
		}
	}
}
