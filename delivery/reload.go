package delivery

import (
	"relayq/transport"
)

// Relay is what a configuration reload changes in a running Deliverer
// (SetRelay): the transport to the relay and what decides retries. The
// rest of Options stays as New got it.
type Relay struct {
	Transport *transport.Transport
	// Name names the relay in log lines and attempt records (Options.Relay).
	Name          string
	Retry         RetryPolicy
	HoldUncertain bool
}

// relayInUse is a Relay with the attempts that use it, so that a replaced
// transport is closed only once the last of them is over.
type relayInUse struct {
	Relay
	users    int  // guarded by Deliverer.mu
	replaced bool // guarded by Deliverer.mu
}

// SetRelay makes r the relay of every attempt that starts from now on,
// and ends a pause the old relay's failures caused (the next attempt is a
// probe, sent at once). Attempts in flight finish with the relay they
// started with; the
// Deliverer then closes the transport it replaced (it owns it from now
// on), so its connections go once they are no longer used. The caller
// keeps closing the current transport after Run has returned (Transport).
func (d *Deliverer) SetRelay(r Relay) {
	r.Retry = r.Retry.withDefaults()
	d.mu.Lock()
	old := d.cur
	d.cur = &relayInUse{Relay: r}
	old.replaced = true
	idle := old.users == 0
	d.mu.Unlock()
	if idle && old.Transport != r.Transport {
		old.Transport.Close()
	}
	// A pause for the old relay (or the old credentials) ends: one probe
	// goes out at once.
	d.pause.retryNow()
	select {
	case d.relaySet <- struct{}{}:
	default:
	}
}

// Transport returns the transport attempts starting now would use.
func (d *Deliverer) Transport() *transport.Transport {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur.Transport
}

// use returns the current relay for one attempt; the attempt hands it
// back with done.
func (d *Deliverer) use() *relayInUse {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cur.users++
	return d.cur
}

func (d *Deliverer) done(r *relayInUse) {
	d.mu.Lock()
	r.users--
	last := r.users == 0 && r.replaced
	current := d.cur.Transport
	d.mu.Unlock()
	if last && r.Transport != current {
		r.Transport.Close()
	}
}

// relayName is the current relay's name, for log lines.
func (d *Deliverer) relayName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur.Name
}
