package queue

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// crockford is Crockford's base32 alphabet; its symbols are in ASCII order,
// so IDs compare like the times they encode.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idLen is the length of a queue ID: 13 symbols of time (65 bits, enough for
// nanoseconds since 1970 for ever) and 7 of randomness.
const idLen = 20

// idSource hands out queue IDs that sort by time of creation. Within one
// process they are strictly increasing even if the clock steps back; the
// random tail keeps IDs from two processes (daemon and a maildrop writer)
// apart.
type idSource struct {
	mu   sync.Mutex
	last int64
}

func (s *idSource) next(now time.Time) string {
	s.mu.Lock()
	n := now.UnixNano()
	if n <= s.last {
		n = s.last + 1
	}
	s.last = n
	s.mu.Unlock()

	var id [idLen]byte
	v := uint64(n)
	for i := 12; i >= 0; i-- {
		id[i] = crockford[v&31]
		v >>= 5
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on Linux (Go ≥ 1.24)
	w := binary.BigEndian.Uint64(r[:])
	for i := 13; i < idLen; i++ {
		id[i] = crockford[w&31]
		w >>= 5
	}
	return string(id[:])
}

// NewID returns a queue ID for Envelope.ID: one no other message has or
// will be given by this Queue.
func (q *Queue) NewID() string { return q.ids.next(q.opts.Now()) }

// ValidID reports whether s has the form of a queue ID, so that commands can
// refuse garbage before asking the store.
func ValidID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') || c == 'I' || c == 'L' || c == 'O' || c == 'U' {
			return false
		}
	}
	return true
}

// idTime is the creation time an ID encodes (its first 13 symbols), zero
// for what is not a queue ID. A damaged record's stand-in gets its
// Created from it.
func idTime(id string) time.Time {
	if !ValidID(id) {
		return time.Time{}
	}
	var v uint64
	for i := range 13 {
		v = v<<5 | uint64(strings.IndexByte(crockford, id[i]))
	}
	return time.Unix(0, int64(v))
}
