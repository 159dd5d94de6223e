package delivery

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"relayq/queue"
	"relayq/route"
	"relayq/transport"
)

// Options configures a Deliverer. Queue is required, and Transport or
// Endpoints.
type Options struct {
	Queue *queue.Queue
	// Transport is the single relay's (id DefaultRelay) when Endpoints is
	// empty.
	Transport *transport.Transport
	// Relay names the single relay in log lines, e.g.
	// "smtp://mail.example.com:587".
	Relay string
	// Endpoints are several relays, and Routes picks among them for each
	// recipient (nil: everything to the first); see Relay.
	Endpoints []Endpoint
	Routes    *route.Table
	// Senders are the sender policies by route name (Relay.Senders).
	Senders map[string]SenderPolicy
	// Workers is how many messages are in flight at once; default 32.
	Workers int
	Retry   RetryPolicy
	// AttemptTimeout bounds one attempt (connect to final reply). It must
	// stay below the queue's lease timeout, or a slow attempt's message is
	// leased again while it is still being sent. Default 10m.
	AttemptTimeout time.Duration
	// ShutdownTimeout is how long Run lets attempts in flight finish after
	// its context ends; the rest are cut short and their leases given back.
	// Default 30s.
	ShutdownTimeout time.Duration
	// HoldUncertain puts a message on hold, instead of retrying it, when
	// an attempt was cut off after the final dot (the relay may have it).
	HoldUncertain bool
	// Notifier queues delivery status notifications after attempts
	// (notice.go); nil sends none.
	Notifier *Notifier
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics counts outcomes (metrics.go); nil counts nothing.
	Metrics *Metrics
}

// Deliverer runs the workers.
type Deliverer struct {
	opts Options
	log  *eventLog

	mu  sync.Mutex
	cur *relayInUse // reload.go; opts.Transport, Relay, Endpoints, Routes, Retry and HoldUncertain are only New's
	// pauses are the relays' circuit breakers, by relay id (pause.go).
	pauses map[string]*relayPause
	// waiting: relay id → IDs of messages waiting for it (pause.go).
	waiting map[string]map[string]bool

	lastTick atomic.Int64 // liveness.go
}

// New returns a Deliverer; call Run to start it.
func New(opts Options) *Deliverer {
	if opts.Workers <= 0 {
		opts.Workers = 32
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 10 * time.Minute
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Retry = opts.Retry.withDefaults()
	r := Relay{Transport: opts.Transport, Name: opts.Relay, Endpoints: opts.Endpoints, Routes: opts.Routes, Senders: opts.Senders, Retry: opts.Retry, HoldUncertain: opts.HoldUncertain}
	return &Deliverer{
		opts:    opts,
		log:     &eventLog{l: opts.Logger},
		cur:     &relayInUse{Relay: r.normalized()},
		pauses:  map[string]*relayPause{},
		waiting: map[string]map[string]bool{},
	}
}

// Run delivers until ctx ends, then shuts down as the package comment says.
// It returns when every worker has finished and every lease is settled.
func (d *Deliverer) Run(ctx context.Context) error {
	// Attempts get their own context: it outlives ctx by the grace period.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()

	slots := make(chan struct{}, d.opts.Workers)
	for range d.opts.Workers {
		slots <- struct{}{}
	}
	// The workers live as long as Run: a goroutine per lease would start
	// each attempt on a fresh stack and grow it again (a copy at every
	// doubling) on the way into the transport.
	leased := make(chan *queue.Lease)
	var wg sync.WaitGroup
	for range d.opts.Workers {
		wg.Go(func() {
			for l := range leased {
				d.attempt(ctx, sendCtx, l)
				slots <- struct{}{}
			}
		})
	}
	defer func() {
		timer := time.AfterFunc(d.opts.ShutdownTimeout, cancelSends)
		close(leased)
		wg.Wait()
		timer.Stop()
	}()

	for {
		d.tick() // liveness.go
		// Wait for at least one idle worker, then take every idle one.
		select {
		case <-slots:
		case <-ctx.Done():
			return nil
		}
		// Take every idle worker. Each relay's breaker (pause.go)
		// decides per message whether it goes out, waits or probes.
		free := 1
	more:
		for {
			select {
			case <-slots:
				free++
			default:
				break more
			}
		}
		changed := d.opts.Queue.Changed()
		leases, err := d.opts.Queue.Lease(free)
		if err != nil {
			d.opts.Logger.Error("cannot lease messages", "err", err)
		}
		for _, l := range leases {
			leased <- l // a worker is idle for each: their slots were taken
		}
		for range free - len(leases) {
			slots <- struct{}{}
		}
		if len(leases) == free && err == nil {
			continue // every worker busy; the loop waits for the next to come back
		}
		if !d.waitForWork(ctx, changed, slots, err != nil) {
			return nil
		}
	}
}

// waitForWork sleeps until a message may be due: something changed in the
// queue, the next scheduled message comes due, or a worker came back. It
// reports false when ctx ended.
func (d *Deliverer) waitForWork(ctx context.Context, changed <-chan struct{}, slots chan struct{}, failed bool) bool {
	wait := time.Minute
	if due, ok := d.opts.Queue.NextDue(); ok {
		wait = due.Sub(d.opts.Now())
	}
	if failed {
		wait = time.Second // a store error; don't spin
	}
	wait = min(max(wait, 5*time.Millisecond), maxIdleWait) // liveness.go
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-changed:
	case <-timer.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// attempt sends one leased message, in parts (parts.go), and records
// what happened. ctx is the attempt's (it outlives runCtx by the shutdown
// grace period); runCtx ends when shutdown begins.
func (d *Deliverer) attempt(runCtx, ctx context.Context, l *queue.Lease) {
	relay := d.use() // reload.go
	defer d.done(relay)
	body, ok := d.intactBody(l, relay.Endpoints[0].Name) // body.go
	if !ok {
		return
	}
	defer body.release()
	var parts []sentPart
	for _, g := range groups(l.Message, relay.Routes) {
		p, interrupted := d.sendPart(ctx, l, relay, g, body)
		if interrupted {
			d.interrupted(runCtx, l, relay, parts, p.relay)
			return
		}
		parts = append(parts, p)
	}
	d.record(runCtx, l, relay, parts)
}

// interrupted handles an attempt cut short by shutdown: no attempt is
// counted for the part cut short, and the message is due again at its old
// time when the daemon comes back. Parts already sent are recorded.
func (d *Deliverer) interrupted(runCtx context.Context, l *queue.Lease, relay *relayInUse, done []sentPart, name string) {
	d.log.interrupted(l, name, context.Canceled)
	if len(done) > 0 {
		d.record(runCtx, l, relay, done)
		return
	}
	if rerr := d.opts.Queue.Release(l); rerr != nil {
		d.opts.Logger.Error("cannot release lease", "id", l.ID, "err", rerr)
	}
}

// record stores the outcomes of every part, logs them and queues notices.
func (d *Deliverer) record(runCtx context.Context, l *queue.Lease, relay *relayInUse, parts []sentPart) {
	qparts := make([]queue.Part, len(parts))
	for i, p := range parts {
		qparts[i] = queue.Part{Attempt: p.attempt, Outcomes: d.outcomes(l.Message, p.verdicts, p.relay, p.waitUntil, relay.Relay)}
	}
	rec, rerr := d.opts.Queue.RecordParts(l, qparts)
	if rerr != nil {
		rec, rerr = d.keepRecording(runCtx, l, qparts, rerr) // record.go
	}
	if rerr != nil {
		return
	}
	tried := false
	for i, p := range parts {
		for _, o := range qparts[i].Outcomes {
			if o.Result == queue.Waiting {
				d.log.waiting(l.Message, p.route, o)
				continue
			}
			tried = true
			// An attempt interrupted by a crash may have reached the relay:
			// if this one delivers, the recipient may have it twice.
			maybeTwice := p.verdicts[o.Address].uncertain || (l.Interrupted && o.Result == queue.Delivered)
			d.log.attempt(l.Message, p.relay, o, maybeTwice, p.attempt.Duration)
			d.opts.Metrics.outcome(l.Message, relay.relayID(p.relay), o, d.opts.Now()) // metrics.go
		}
		d.log.heldUncertain(l.Message, p.relay, qparts[i].Outcomes)
	}
	if tried {
		d.opts.Notifier.After(rec) // notice.go
	}
}

// outcomes turns verdicts into what the queue records: deferrals get their
// next attempt time, or become dead letters once the message is too old.
// Recipients without a verdict wait for their relays until waitUntil (or
// die, expired, when the message is too old already).
func (d *Deliverer) outcomes(m *queue.Message, verdicts map[string]verdict, relayName string, waitUntil time.Time, relay Relay) []queue.Outcome {
	now := d.opts.Now()
	deadline := m.LifetimeStart().Add(relay.Retry.MaxLifetime) // an operator's requeue starts it again
	var out []queue.Outcome
	for _, r := range m.Pending() {
		v, ok := verdicts[r.Address]
		if !ok {
			continue
		}
		o := queue.Outcome{Address: r.Address, Result: v.result, Reply: v.reply, Relay: relayName}
		o.Uncertain, o.Hold = v.uncertain, v.uncertain && relay.HoldUncertain
		switch {
		case v.result == queue.Waiting && !now.Before(deadline):
			o.Result = queue.Failed
			o.Reply = expired(r.LastReply, relay.Retry.MaxLifetime)
		case v.result == queue.Waiting:
			o.NextAttempt = waitUntil
			if waitUntil.After(deadline) {
				o.NextAttempt = deadline
			}
		case v.result == queue.Deferred && !now.Before(deadline):
			o.Result = queue.Failed
			o.Reply = expired(v.reply, relay.Retry.MaxLifetime)
		case v.result == queue.Deferred:
			next := now.Add(relay.Retry.Delay(r.Attempts + 1))
			// One last try at the deadline rather than none.
			if next.After(deadline) {
				next = deadline
			}
			if o.Hold {
				next = now // the operator's release sends it at once
			}
			o.NextAttempt = next
		}
		out = append(out, o)
	}
	return out
}

// pendingAddresses lists the recipients still to be tried, each once: the
// relay's per-recipient replies are keyed by address.
func pendingAddresses(m *queue.Message) []string {
	seen := make(map[string]bool)
	var out []string
	for _, r := range m.Pending() {
		if !seen[r.Address] {
			seen[r.Address] = true
			out = append(out, r.Address)
		}
	}
	return out
}
