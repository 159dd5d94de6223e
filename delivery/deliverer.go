package delivery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"relayq/queue"
	"relayq/transport"
)

// Options configures a Deliverer. Queue and Transport are required.
type Options struct {
	Queue     *queue.Queue
	Transport *transport.Transport
	// Relay names the relay in log lines, e.g. "smtp://mail.example.com:587".
	Relay string
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
}

// Deliverer runs the workers.
type Deliverer struct {
	opts  Options
	log   *eventLog
	pause *relayPause

	mu  sync.Mutex
	cur *relayInUse // reload.go; opts.Transport, Relay, Retry and HoldUncertain are only New's
	// relaySet wakes a Run waiting out a relay pause when SetRelay ends it.
	relaySet chan struct{}

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
	return &Deliverer{
		opts:  opts,
		log:   &eventLog{l: opts.Logger},
		pause: newRelayPause(min(time.Second, opts.Retry.InitialInterval), opts.Retry.InitialInterval),
		cur:   &relayInUse{Relay: Relay{Transport: opts.Transport, Name: opts.Relay, Retry: opts.Retry, HoldUncertain: opts.HoldUncertain}},

		relaySet: make(chan struct{}, 1),
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
	var wg sync.WaitGroup
	defer func() {
		timer := time.AfterFunc(d.opts.ShutdownTimeout, cancelSends)
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
		free := 1
		if d.pause.probing() {
			// A probe goes out alone: first let the attempts still in
			// flight come back, so that their results count and a
			// failing relay sees one connection per pause, not one per
			// worker.
			for free < d.opts.Workers {
				select {
				case <-slots:
					free++
				case <-ctx.Done():
					return nil
				}
			}
		}
		if !d.waitForRelay(ctx) {
			return nil
		}
		if d.pause.probing() {
			for ; free > 1; free-- {
				slots <- struct{}{}
			}
		}
	more:
		for !d.pause.probing() {
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.attempt(ctx, sendCtx, l)
				slots <- struct{}{}
			}()
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

// waitForRelay sleeps out a relay pause; it reports false when ctx ended.
func (d *Deliverer) waitForRelay(ctx context.Context) bool {
	wait := d.pause.remaining(d.opts.Now())
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-d.relaySet: // reload.go
	case <-ctx.Done():
		return false
	}
	return true
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

// attempt sends one leased message and records what happened. ctx is the
// attempt's (it outlives runCtx by the shutdown grace period); runCtx ends
// when shutdown begins.
func (d *Deliverer) attempt(runCtx, ctx context.Context, l *queue.Lease) {
	relay := d.use() // reload.go
	defer d.done(relay)
	if !d.bodyIntact(l, relay.Name) {
		return
	}
	rcpts := pendingAddresses(l.Message)
	msg := &transport.Message{
		From:       l.From,
		Recipients: rcpts,
		Body:       d.opts.Queue.Body(l.ID),
		Size:       l.Size,
		UTF8:       l.UTF8,
		EightBit:   l.EightBit,
	}
	setDSN(msg, l.Message)
	attemptCtx, cancel := context.WithTimeout(ctx, d.opts.AttemptTimeout)
	start := d.opts.Now()
	res, err := relay.Transport.Send(attemptCtx, msg)
	cancel()
	if err == nil || ctx.Err() == nil {
		d.noteRelay(relay.Name, res, err)
	}
	if err != nil && ctx.Err() != nil {
		// Cut short by shutdown: no attempt is counted; the message is
		// due again at its old time when the daemon comes back.
		if rerr := d.opts.Queue.Release(l); rerr != nil {
			d.opts.Logger.Error("cannot release lease", "id", l.ID, "err", rerr)
		}
		d.log.interrupted(l, relay.Name, err)
		return
	}
	verdicts := make(map[string]verdict, len(rcpts))
	for i, addr := range rcpts {
		if err != nil {
			verdicts[addr] = classifyTransaction(err)
		} else {
			verdicts[addr] = classifyRecipient(res.Recipients[i])
		}
	}
	outcomes := d.outcomes(l.Message, verdicts, relay.Relay)
	attempt := queue.Attempt{Time: start, Relay: relay.Name, Duration: d.opts.Now().Sub(start), Transcript: transcriptOf(res, err)}
	rec, rerr := d.opts.Queue.RecordAttempt(l, attempt, outcomes)
	if rerr != nil {
		rec, rerr = d.keepRecording(runCtx, l, attempt, outcomes, rerr) // record.go
	}
	if rerr != nil {
		return
	}
	for _, o := range outcomes {
		// An attempt interrupted by a crash may have reached the relay:
		// if this one delivers, the recipient may have it twice.
		maybeTwice := verdicts[o.Address].uncertain || (l.Interrupted && o.Result == queue.Delivered)
		d.log.attempt(l.Message, relay.Name, o, maybeTwice, d.opts.Now().Sub(start))
	}
	d.log.heldUncertain(l.Message, relay.Name, outcomes)
	d.opts.Notifier.After(rec) // notice.go
}

// bodyIntact checks the leased message's body against its checksum before
// anything is sent: the whole body is verified up front (it is read from
// the mapped file; a second read costs little next to the network), so a
// corrupt body never reaches the relay, not even in part. A corrupt one
// goes to the dead letters with reason corrupt, and its sender gets a
// failure notice; bodyIntact then reports false.
func (d *Deliverer) bodyIntact(l *queue.Lease, relay string) bool {
	err := d.opts.Queue.VerifyBody(l.Message)
	if err == nil {
		return true
	}
	// On a store failure the lease is kept, not released: the message
	// is tried again when the lease runs out, instead of at once and in
	// a loop while the store keeps failing (a full disk).
	if !errors.Is(err, queue.ErrCorrupt) {
		d.opts.Logger.Error("cannot verify the body; will retry when the lease runs out", "id", l.ID, "err", err)
		return false
	}
	rec, rerr := d.opts.Queue.DeadCorrupt(l, err)
	if rerr != nil {
		d.opts.Logger.Error("cannot dead-letter a corrupt message; it stays queued, unsent, until the lease runs out", "id", l.ID, "err", rerr)
		return false
	}
	d.log.corrupt(l.Message, relay, err)
	d.opts.Notifier.After(rec) // notice.go
	return false
}

// outcomes turns verdicts into what the queue records: deferrals get their
// next attempt time, or become dead letters once the message is too old.
func (d *Deliverer) outcomes(m *queue.Message, verdicts map[string]verdict, relay Relay) []queue.Outcome {
	now := d.opts.Now()
	deadline := m.LifetimeStart().Add(relay.Retry.MaxLifetime) // an operator's requeue starts it again
	var out []queue.Outcome
	for _, r := range m.Pending() {
		v, ok := verdicts[r.Address]
		if !ok {
			continue
		}
		o := queue.Outcome{Address: r.Address, Result: v.result, Reply: v.reply}
		o.Uncertain, o.Hold = v.uncertain, v.uncertain && relay.HoldUncertain
		if v.result == queue.Deferred {
			if !now.Before(deadline) {
				o.Result = queue.Failed
				o.Reply = expired(v.reply, relay.Retry.MaxLifetime)
			} else {
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
		}
		out = append(out, o)
	}
	return out
}

// expired wraps the last reply of a recipient that ran out of time.
func expired(last *queue.Reply, lifetime time.Duration) *queue.Reply {
	r := &queue.Reply{Lines: []string{"message expired after " + lifetime.String() + " in the queue"}}
	if last != nil {
		r.Code, r.Enhanced = last.Code, last.Enhanced
		r.Lines = append(r.Lines, "last reply: "+last.String())
	}
	return r
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
