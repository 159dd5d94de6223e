package delivery

import "time"

// Liveness, for a watchdog (systemd's WatchdogSec=): the dispatch loop
// marks each time it goes round. Every wait in the loop is bounded, so a
// loop that has not gone round for longer than TickBound is stuck (a
// deadlock, a store that never answers), not idle.

// maxIdleWait bounds the loop's sleep when no message is due soon, so that
// an idle loop still goes round.
const maxIdleWait = time.Minute

func (d *Deliverer) tick() { d.lastTick.Store(time.Now().UnixNano()) }

// LastTick returns when the dispatch loop last went round; the zero time
// before Run starts.
func (d *Deliverer) LastTick() time.Time {
	n := d.lastTick.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// TickBound is the longest a working loop may go without a tick: the
// longest of its waits (every worker in an attempt, a relay pause, the
// idle sleep) one after the other.
func (d *Deliverer) TickBound() time.Duration {
	return d.opts.AttemptTimeout + d.opts.Retry.InitialInterval + maxIdleWait
}
