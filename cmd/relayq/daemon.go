package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"relayq/api"
	"relayq/config"
	"relayq/control"
	"relayq/delivery"
	"relayq/queue"
	"relayq/spool"
)

// daemon is a running relayq: the queue, the ways in (intake sockets,
// maildrop), the control socket and the delivery workers.
type daemon struct {
	log       *slog.Logger
	cfg       *config.Config // as at start; reload.go applies changes to the parts it can
	q         *queue.Queue
	claim     *queue.Claim   // taken before the sockets are bound (claimQueue)
	relaySet  delivery.Relay // as at start (routing.go); the deliverer's is the current one
	intake    *spool.Server
	apiSrv    *api.Server // nil without [api] socket or listen (api.go)
	ctl       *control.Server
	relay     string                             // the relays' names, for logs
	rewriting spool.Rewriting                    // [rewrite], [aliases], [defaults]: intake and the maildrop (rewrite.go)
	deliverer atomic.Pointer[delivery.Deliverer] // set once delivery starts; for status (relaystatus.go)

	cancel context.CancelFunc // stops the maildrop watcher and delivery
	done   chan struct{}      // closed when both have returned

	inherited map[string]net.Listener // sockets systemd passed (systemd.go)
	metrics   *promMetrics            // [metrics] (metrics.go); nil when off

	rl       reloader   // reload.go
	reloadMu sync.Mutex // one reload at a time, none once stopping
	stopping bool       // guarded by reloadMu
}

// startErr is a failure to start, with the exit code it calls for
// (exit.go): 78 for the configuration, 73 for a directory or file that
// cannot be made or used, 75 when another relayq holds the queue or a
// socket, 71 for the rest (an address in use).
type startErr struct {
	code int
	err  error
}

func (e *startErr) Error() string { return e.err.Error() }
func (e *startErr) Unwrap() error { return e.err }

// startDaemon opens the queue and starts everything. Each step that fails
// says why (startErr gives the exit code), and what the steps before it
// started is undone in reverse order: the queue file's lock released, the
// sockets closed and removed.
//
// The queue file is claimed first, so that a second relayq serve stops
// there; then intake listens, answering "starting" (spool/starting.go);
// then the queue opens, which takes seconds for a large queue, and intake
// takes mail from then on. The control socket, the API and the metrics
// come after, as before.
func startDaemon(cfg *config.Config, log *slog.Logger, rl reloader, inherited map[string]net.Listener) (*daemon, error) {
	d := &daemon{log: log, cfg: cfg, done: make(chan struct{}), rl: rl, inherited: inherited}
	if cfg.Metrics.Listen != "" {
		d.metrics = newMetrics() // metrics.go
	}
	steps := []func() (undo func(), err error){d.claimQueue, d.newTransport, d.startIntake, d.openQueue, d.startAPI, d.startControl, d.startMetrics}
	var undo []func()
	for _, step := range steps {
		u, err := step()
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			return nil, err
		}
		undo = append(undo, u)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.startBackground(ctx)
	d.runWatchdog(ctx) // systemd.go
	return d, nil
}

// claimQueue makes the directories for the queue, the sockets and the
// maildrop, then claims the queue file (queue/claim.go): from here on a
// second relayq serve on it fails, before it binds anything.
func (d *daemon) claimQueue() (func(), error) {
	cfg := d.cfg
	// Directories for the sockets and the maildrop must be reachable by
	// local users (statedir.go); the queue file itself is 0600.
	if err := makeStateDirs(cfg.Queue.Path, cfg.Submission.Socket, cfg.Control.Socket, cfg.Submission.Maildrop, cfg.API.Socket); err != nil {
		return nil, &startErr{exitCantCreate, err}
	}
	c, err := queue.ClaimFile(cfg.Queue.Path, d.queueOptions())
	if err != nil {
		return nil, queueStartErr(err)
	}
	d.claim = c
	return func() { _ = c.Release() }, nil
}

// openQueue opens the claimed queue file (taking bbolt's lock; seconds
// for a large queue) and waits until its pages have been read through,
// then lets intake take mail.
func (d *daemon) openQueue() (func(), error) {
	opts := d.queueOptions()
	opts.Claim = d.claim
	q, err := queue.Open(d.cfg.Queue.Path, opts)
	if err != nil {
		return nil, queueStartErr(err)
	}
	// After a clean stop Open reads the saved freelist and walks the
	// file's pages in the background: a commit that read a damaged page
	// would crash the daemon (queue/pagewalk.go). Intake keeps taking mail
	// into the maildrop until the walk has read every page; damage fails
	// the start with exit 65, as when Open finds it.
	if err := q.Walked(); err != nil {
		q.Close()
		return nil, queueStartErr(err)
	}
	d.q = q
	d.intake.Ready(q) // spool/starting.go: MAIL is taken from now on
	return func() { q.Close() }, nil
}

// queueOptions are the queue's settings from the config.
func (d *daemon) queueOptions() queue.Options {
	cfg := d.cfg
	return queue.Options{
		LeaseTimeout: cfg.Delivery.LeaseTimeout.Duration,
		MaxSize:      int64(cfg.Queue.MaxSize),
		MinFree:      int64(cfg.Queue.MinFree),
		Logger:       d.log,
		// 0 in the config keeps no history; the queue's 0 means its default.
		HistoryRetention:  cmp.Or(cfg.Queue.HistoryRetention.Duration, -1),
		HistoryMaxSize:    int64(cfg.Queue.HistoryMaxSize),
		CompactFree:       int64(cfg.Queue.CompactFree),
		IdempotencyWindow: cfg.API.IdempotencyWindow.Duration,
	}
}

// queueStartErr gives a failure to claim or open the queue its exit code.
func queueStartErr(err error) error {
	switch {
	case errors.Is(err, queue.ErrLocked):
		return &startErr{exitTempFail, err}
	case errors.Is(err, queue.ErrDamaged):
		return &startErr{exitDataErr, err}
	}
	return &startErr{exitCantCreate, err}
}

// newTransport builds the relays' transports and the routes (routing.go).
func (d *daemon) newTransport() (func(), error) {
	rs, err := relaySet(d.cfg, d.log)
	if err != nil {
		return nil, &startErr{exitConfig, err}
	}
	d.relaySet, d.relay = rs, relayNames(rs)
	return func() {
		for _, e := range rs.Endpoints {
			e.Transport.Close()
		}
	}, nil
}

// startIntake makes sure of the maildrop and listens on the submission
// socket and the loopback addresses. It runs before the queue is open:
// until openQueue calls Ready, intake writes what it takes into the
// maildrop, which the import queues once the queue is open.
func (d *daemon) startIntake() (func(), error) {
	cfg := d.cfg
	gid, err := cfg.Submission.SocketGID()
	if err != nil {
		return nil, &startErr{exitConfig, err}
	}
	if err := spool.EnsureMaildropFor(cfg.Submission.Maildrop, os.FileMode(cfg.Submission.SocketMode), gid); err != nil {
		return nil, &startErr{exitCantCreate, err}
	}
	rw, err := newRewriting(cfg, d.log) // rewrite.go
	if err != nil {
		return nil, &startErr{exitConfig, err}
	}
	intake := spool.NewServer(spool.Options{
		// Until openQueue calls Ready, a message is written into the
		// maildrop and imported once the queue is open (spool/starting.go).
		Maildrop:       cfg.Submission.Maildrop,
		QueuePath:      cfg.Queue.Path,
		MinFree:        int64(cfg.Queue.MinFree),
		Socket:         cfg.Submission.Socket,
		SocketMode:     os.FileMode(cfg.Submission.SocketMode),
		SocketGID:      gid,
		Listen:         cfg.Submission.Listen,
		Hostname:       cfg.Submission.Hostname,
		MaxMessageSize: int64(cfg.Submission.MaxMessageSize),
		MaxRecipients:  cfg.Submission.MaxRecipients,
		Logger:         d.log,
		Limits:         intakeLimits(cfg.Limits), // daemon_policy.go

		MaxConnections:        cfg.Submission.MaxConnections,
		MaxConnectionsPerUser: cfg.Submission.MaxConnectionsPerUser,
		IdleTimeout:           cfg.Submission.IdleTimeout.Duration,
		ReadTimeout:           cfg.Submission.ReadTimeout.Duration,
		MaxMemory:             int64(cfg.Submission.MaxMemory),
		Rewriting:             rw,
		Inherited:             d.inherited,
		Metrics:               d.metrics.spoolMetrics(),
	})
	if err := intake.Start(); err != nil {
		return nil, &startErr{listenExitCode(err), err}
	}
	warnListeners(cfg.Submission, d.log) // daemon_policy.go
	d.intake = intake
	return func() { _ = intake.Shutdown(context.Background()) }, nil
}

// startControl listens on the control socket.
func (d *daemon) startControl() (func(), error) {
	ctl, err := listenControl(d.cfg, d.q, d.log, d.relays, d.intake, d.reload, d.endPauses) // daemon_policy.go
	if err != nil {
		return nil, err
	}
	d.ctl = ctl
	return func() { ctl.Close() }, nil
}

// startBackground runs the maildrop watcher and the delivery workers.
func (d *daemon) startBackground(ctx context.Context) {
	notifier, noticesDone := d.startNotifier(ctx) // daemon_policy.go
	deliverer := delivery.New(delivery.Options{
		Queue:     d.q,
		Endpoints: d.relaySet.Endpoints,
		Routes:    d.relaySet.Routes,
		Senders:   d.relaySet.Senders,
		Workers:   d.cfg.Delivery.Workers,
		Retry:     retryPolicy(d.cfg.Retry), // reload.go
		// An attempt must end well before its lease runs out, or the
		// message would be leased (and sent) twice.
		AttemptTimeout:  d.cfg.Delivery.LeaseTimeout.Duration * 9 / 10,
		ShutdownTimeout: d.cfg.Delivery.ShutdownTimeout.Duration,
		HoldUncertain:   d.cfg.Delivery.Uncertain == config.UncertainHold,
		Notifier:        notifier,
		Logger:          d.log,
		Metrics:         d.metrics.deliveryMetrics(),
	})
	d.metrics.addDeliverer(deliverer)
	d.deliverer.Store(deliverer)
	maildropDone := make(chan struct{})
	go func() {
		defer close(maildropDone)
		// Intake: a maildrop file gets the policy of a socket submission
		// by its owner (max_recipients, [limits]) and its rewriting.
		md := &spool.Maildrop{Dir: d.cfg.Submission.Maildrop, Queue: d.q, MaxSize: int64(d.cfg.Submission.MaxMessageSize), Intake: d.intake, Hostname: d.cfg.Submission.Hostname, Log: d.log}
		md.Watch(ctx, time.Second)
	}()
	go func() {
		defer close(d.done)
		if err := deliverer.Run(ctx); err != nil {
			d.log.Error("delivery stopped", "err", err)
		}
		<-maildropDone
		<-noticesDone
	}()
}

// stop shuts down in the order that loses nothing: stop taking mail, stop
// importing, let deliveries finish (or give their leases back), then close
// the store.
func (d *daemon) stop() error {
	notify(d.log, sd.SdNotifyStopping) // systemd.go
	d.reloadMu.Lock()
	d.stopping = true
	d.reloadMu.Unlock()
	grace := d.cfg.Delivery.ShutdownTimeout.Duration
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	if d.apiSrv != nil { // first: its requests in progress end in intake
		errs = append(errs, d.apiSrv.Shutdown(ctx))
	}
	errs = append(errs, d.intake.Shutdown(ctx))
	d.cancel()
	<-d.done
	// The deliverer has closed the transports a reload replaced.
	errs = append(errs, d.ctl.Close())
	for _, t := range d.deliverer.Load().Transports() {
		errs = append(errs, t.Close())
	}
	d.metrics.close() // metrics.go
	errs = append(errs, d.q.Close())
	errs = append(errs, d.claim.Release())
	return errors.Join(errs...)
}
