package delivery

import (
	"errors"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport"
)

// relayPause holds off new attempts while the relay itself is failing
// (refused connection, bad greeting, TLS or AUTH failure, 421), the way
// Postfix marks a destination dead: with a thousand messages queued, a
// broken relay should see a few probes, not a thousand connections. The
// pause doubles from base up to max and ends at the first success. It also
// keeps the latest attempt's result, for `relayq status` (relaystatus.go).
type relayPause struct {
	mu       sync.Mutex
	until    time.Time
	interval time.Duration
	base     time.Duration
	max      time.Duration
	failures int        // session failures since the last success
	last     lastResult // the latest attempt's; zero before the first
}

func newRelayPause(base, max time.Duration) *relayPause {
	return &relayPause{base: base, max: max}
}

// failed records a session failure at now and returns the new pause.
func (p *relayPause) failed(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interval = min(max(2*p.interval, p.base), p.max)
	p.until = now.Add(p.interval)
	p.failures++
	return p.interval
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

// noteRelay updates the pause after an attempt and logs changes once; it
// keeps the attempt's result for RelayStatus.
func (d *Deliverer) noteRelay(relay string, res *transport.Result, err error) {
	d.pause.noteResult(d.opts.Now(), res, err) // relaystatus.go
	switch {
	case err == nil:
		if d.pause.succeeded() {
			d.opts.Logger.Info("relay is back", "relay", relay)
		}
	case sessionFailure(err):
		wait := d.pause.failed(d.opts.Now())
		d.opts.Logger.Warn("relay unavailable; holding deliveries", "relay", relay, "for", wait, "err", err)
	}
}
