package delivery

import (
	"errors"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport"
)

// relayPause is one relay's circuit breaker: it holds off attempts to the
// relay while the relay itself is failing (refused connection, bad
// greeting, TLS or AUTH failure, 421), the way Postfix marks a destination
// dead: with a thousand messages queued, a broken relay should see a few
// probes, not a thousand connections. The pause doubles from base up to
// max; once it is over, one attempt at a time goes out as a probe, and the
// first success ends it. It also keeps the latest attempt's result, for
// `relayq status` (relaystatus.go).
type relayPause struct {
	mu       sync.Mutex
	until    time.Time
	interval time.Duration
	base     time.Duration
	max      time.Duration
	failures int        // session failures since the last success
	probe    bool       // a probe is out
	last     lastResult // the latest attempt's; zero before the first
}

func newRelayPause(base, max time.Duration) *relayPause {
	return &relayPause{base: base, max: max}
}

// failed records a session failure at now of an attempt that went out as
// the probe or not, and returns the pause and whether this failure
// started or lengthened it. The pause starts at the first failure and
// doubles only when a probe fails: attempts that were already under way
// when the relay went down (every worker's, at once) are that one outage,
// not one each; counted, they doubled the pause to its maximum at once
// (32 workers: 5 minutes for a relay that was back a second later).
func (p *relayPause) failed(now time.Time, probe bool) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures++
	if p.interval != 0 && !probe {
		return p.interval, false
	}
	p.interval = min(max(2*p.interval, p.base), p.max)
	p.until = now.Add(p.interval)
	return p.interval, true
}

// succeeded ends the pause; it reports whether there was one.
func (p *relayPause) succeeded() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.interval != 0
	p.interval, p.until, p.failures = 0, time.Time{}, 0
	return was
}

// retryNow ends the wait but not the probing: after a reload the next
// attempt goes out at once, alone, to the new relay or with the new
// credentials.
func (p *relayPause) retryNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.until = time.Time{}
}

// probing reports whether the last attempt found the relay failing: then
// only one message at a time goes out, as a probe.
func (p *relayPause) probing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.interval != 0
}

// remaining is how long new attempts should still wait.
func (p *relayPause) remaining(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.until.Sub(now)
}

// acquire asks to send to the relay at now. ok: go ahead (probe: as the
// one probe, which the caller ends with endProbe). Otherwise the relay is
// down, and retry is when to ask again.
func (p *relayPause) acquire(now time.Time) (ok, probe bool, retry time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.interval == 0:
		return true, false, time.Time{}
	case now.Before(p.until):
		return false, false, p.until
	case p.probe:
		// Another message is probing; ask again once it may have
		// answered.
		return false, false, now.Add(p.base)
	}
	p.probe = true
	return true, true, time.Time{}
}

func (p *relayPause) endProbe() {
	p.mu.Lock()
	p.probe = false
	p.mu.Unlock()
}

// pauseOf returns the breaker of relay id, made on first use. Breakers
// are kept by id across reloads.
func (d *Deliverer) pauseOf(id string) *relayPause {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pauses[id]
	if !ok {
		p = newRelayPause(min(time.Second, d.cur.Retry.InitialInterval), d.cur.Retry.InitialInterval)
		d.pauses[id] = p
	}
	return p
}

// EndPauses ends every relay's pause (`relayq flush`, a reload): the next
// attempt to each relay goes out at once, alone, as a probe, instead of
// after a pause that may have grown to retry.initial_interval; the
// messages waiting for a relay are due at once. A relay that is still
// down pauses again after that one failed probe.
func (d *Deliverer) EndPauses() {
	d.mu.Lock()
	pauses := make([]*relayPause, 0, len(d.pauses))
	for _, p := range d.pauses {
		pauses = append(pauses, p)
	}
	d.mu.Unlock()
	for _, p := range pauses {
		p.retryNow()
	}
	d.releaseWaiting("")
}

// sessionFailure reports whether err is the relay's fault rather than the
// message's.
func sessionFailure(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	switch te.Stage {
	case transport.StageDial, transport.StageGreeting, transport.StageTLS, transport.StageHello, transport.StageAuth:
		return true
	}
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == 421
}

// noteRelay updates relay id's breaker after an attempt and logs changes
// once; it keeps the attempt's result for RelayStatus. The first success
// after a pause makes the messages waiting for the relay due at once.
func (d *Deliverer) noteRelay(id, name string, probe bool, res *transport.Result, err error) {
	p := d.pauseOf(id)
	p.noteResult(d.opts.Now(), res, err) // relaystatus.go
	switch {
	case err == nil:
		if p.succeeded() {
			d.opts.Logger.Info("relay is back; sending the messages waiting for it", "relay", name)
			d.releaseWaiting(id)
		}
	case sessionFailure(err):
		if wait, changed := p.failed(d.opts.Now(), probe); changed {
			d.opts.Logger.Warn("relay unavailable; holding its deliveries", "relay", name, "for", wait, "err", err)
		}
	}
}

// wait notes that message id waits for relay (its route's relays were
// down, or failed as a whole).
func (d *Deliverer) wait(relay, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waiting[relay] == nil {
		d.waiting[relay] = map[string]bool{}
	}
	d.waiting[relay][id] = true
}

// releaseWaiting makes the messages waiting for relay ("" for every
// relay) due now, as `relayq queue retry` does; their attempt counts stay.
func (d *Deliverer) releaseWaiting(relay string) {
	d.mu.Lock()
	var ids []string
	for r, set := range d.waiting {
		if relay != "" && r != relay {
			continue
		}
		for id := range set {
			ids = append(ids, id)
		}
		delete(d.waiting, r)
	}
	d.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	// A message leased meanwhile, gone or held is left as it is.
	if _, err := d.opts.Queue.Retry(ids); err != nil {
		d.opts.Logger.Error("cannot make the messages waiting for a relay due", "relay", relay, "err", err)
	}
}
