package transport

import "time"

// Stats is a snapshot of a Transport's pool and rate limit, for metrics:
// the caller (relayq's metrics endpoint) reads it at scrape time, so
// nothing is counted twice and the transport keeps no metrics types.
type Stats struct {
	// Open counts the connections open or being dialled, Idle those of
	// them waiting in the pool for the next message.
	Open, Idle int
	// RateWaits counts the Sends that found the rate window full and had
	// to wait for room (Options.RateLimit); RateWaited is the time they
	// waited in all. Both only grow, for the Transport's life.
	RateWaits  uint64
	RateWaited time.Duration
}

// Stats returns the pool's connections now and the rate-limit waits so far.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	s := Stats{Open: t.open, Idle: len(t.idle)}
	t.mu.Unlock()
	if t.rate != nil {
		s.RateWaits = t.rate.waits.Load()
		s.RateWaited = time.Duration(t.rate.waited.Load())
	}
	return s
}
