package delivery

import (
	"slices"

	"relayq/route"
	"relayq/transport"
)

// Endpoint is one relay of several: the id routes name it by, a name for
// log lines and history, and its transport (its own pool, rate limit and
// circuit breaker).
type Endpoint struct {
	ID   string
	Name string // in log lines and attempt records; default ID
	// Transport is the relay's; the Deliverer closes it once replaced by
	// SetRelay and no attempt uses it any more.
	Transport *transport.Transport
}

// DefaultRelay is the id of the single relay of a Relay without Endpoints.
const DefaultRelay = "default"

// Relay is what a configuration reload changes in a running Deliverer
// (SetRelay): the relays, the routes and what decides retries. The rest
// of Options stays as New got it.
type Relay struct {
	// Transport and Name describe a single relay (id DefaultRelay, every
	// recipient routed to it) when Endpoints is empty.
	Transport *transport.Transport
	// Name names the relay in log lines and attempt records (Options.Relay).
	Name string
	// Endpoints are several relays; Routes picks among them by id. nil
	// Routes sends everything to the first.
	Endpoints []Endpoint
	Routes    *route.Table
	// Senders are the sender policies applied on the way out, by route
	// name: each part of a message gets its route's (outgoing.go). A
	// route without one is sent as stored; nil: every part is.
	Senders       map[string]SenderPolicy
	Retry         RetryPolicy
	HoldUncertain bool
}

// normalized fills in Endpoints and Routes for a single relay.
func (r Relay) normalized() Relay {
	if len(r.Endpoints) == 0 {
		r.Endpoints = []Endpoint{{ID: DefaultRelay, Name: r.Name, Transport: r.Transport}}
	}
	r.Endpoints = slices.Clone(r.Endpoints)
	for i := range r.Endpoints {
		if r.Endpoints[i].Name == "" {
			r.Endpoints[i].Name = r.Endpoints[i].ID
		}
	}
	if r.Routes == nil {
		r.Routes = route.Single(r.Endpoints[0].ID)
	}
	r.Retry = r.Retry.withDefaults()
	return r
}

func (r *Relay) endpoint(id string) (Endpoint, bool) {
	for _, e := range r.Endpoints {
		if e.ID == id {
			return e, true
		}
	}
	return Endpoint{}, false
}

func (r *Relay) transports() []*transport.Transport {
	out := make([]*transport.Transport, len(r.Endpoints))
	for i, e := range r.Endpoints {
		out[i] = e.Transport
	}
	return out
}

// relayInUse is a Relay with the attempts that use it, so that a replaced
// transport is closed only once the last of them is over.
type relayInUse struct {
	Relay
	users    int  // guarded by Deliverer.mu
	replaced bool // guarded by Deliverer.mu
}

// SetRelay makes r the relays and routes of every attempt that starts from
// now on, and ends the pauses the old relays' failures caused (the next
// attempt to each is a probe, sent at once; messages waiting for a relay
// are due at once). Attempts in flight finish with the relays they started
// with; the Deliverer then closes the transports it replaced (it owns them
// from now on), so their connections go once they are no longer used. The
// caller keeps closing the current transports after Run has returned
// (Transports).
func (d *Deliverer) SetRelay(r Relay) {
	r = r.normalized()
	d.mu.Lock()
	old := d.cur
	d.cur = &relayInUse{Relay: r}
	old.replaced = true
	idle := old.users == 0
	d.mu.Unlock()
	if idle {
		closeReplaced(old.transports(), r.transports())
	}
	// A pause for an old relay (or the old credentials) ends: one probe
	// goes out at once.
	d.EndPauses()
}

// closeReplaced closes the transports of old that current no longer uses.
func closeReplaced(old, current []*transport.Transport) {
	for _, t := range old {
		if !slices.Contains(current, t) {
			t.Close()
		}
	}
}

// Transport returns the transport of the first relay attempts starting
// now would use.
func (d *Deliverer) Transport() *transport.Transport {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur.Endpoints[0].Transport
}

// Transports returns every relay's transport in use now.
func (d *Deliverer) Transports() []*transport.Transport {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur.transports()
}

// use returns the current relays for one attempt; the attempt hands them
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
	current := d.cur.transports()
	d.mu.Unlock()
	if last {
		closeReplaced(r.transports(), current)
	}
}
