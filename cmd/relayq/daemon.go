package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"relayq"
	"relayq/control"
	"relayq/delivery"
	"relayq/queue"
	"relayq/spool"
	"relayq/transport"
)

// daemon is a running relayq: the queue, the ways in (intake sockets,
// maildrop), the control socket and the delivery workers.
type daemon struct {
	log       *slog.Logger
	cfg       *relayq.Config
	q         *queue.Queue
	transport *transport.Transport
	intake    *spool.Server
	ctl       *control.Server
	relay     string
	deliverer atomic.Pointer[delivery.Deliverer] // set once delivery starts; for status (relaystatus.go)

	cancel context.CancelFunc // stops the maildrop watcher and delivery
	done   chan struct{}      // closed when both have returned
}

// configError marks start-up failures caused by the configuration (a CA
// file that does not parse, a group that does not exist).
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// startDaemon opens the queue and starts everything; on failure it undoes
// what it started.
func startDaemon(cfg *relayq.Config, log *slog.Logger) (d *daemon, err error) {
	d = &daemon{log: log, cfg: cfg, done: make(chan struct{})}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	// Directories for the sockets and the maildrop must be reachable by
	// local users (statedir.go); the queue file itself is 0600.
	if err := makeStateDirs(cfg.Queue.Path, cfg.Submission.Socket, cfg.Control.Socket, cfg.Submission.Maildrop); err != nil {
		return nil, err
	}
	d.q, err = queue.Open(cfg.Queue.Path, queue.Options{
		LeaseTimeout: cfg.Delivery.LeaseTimeout.Duration,
		MaxSize:      int64(cfg.Queue.MaxSize),
		Logger:       log,
		// 0 in the config keeps no history; the queue's 0 means its default.
		HistoryRetention: cmp.Or(cfg.Queue.HistoryRetention.Duration, -1),
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.q.Close() })

	topts, relay, err := transportOptions(cfg.Relay, log)
	if err != nil {
		return nil, &configError{err}
	}
	d.relay = relay
	d.transport = transport.New(topts)
	undo = append(undo, func() { d.transport.Close() })

	gid, err := cfg.Submission.SocketGID()
	if err != nil {
		return nil, &configError{err}
	}
	if err := spool.EnsureMaildropFor(cfg.Submission.Maildrop, os.FileMode(cfg.Submission.SocketMode), gid); err != nil {
		return nil, err
	}
	d.intake = spool.NewServer(spool.Options{
		Queue:          d.q,
		Socket:         cfg.Submission.Socket,
		SocketMode:     os.FileMode(cfg.Submission.SocketMode),
		SocketGID:      gid,
		Listen:         cfg.Submission.Listen,
		Hostname:       cfg.Submission.Hostname,
		MaxMessageSize: int64(cfg.Submission.MaxMessageSize),
		MaxRecipients:  cfg.Submission.MaxRecipients,
		Logger:         log,
		Limits:         intakeLimits(cfg.Limits), // daemon_policy.go
	})
	if err := d.intake.Start(); err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = d.intake.Shutdown(context.Background()) })

	d.ctl, err = listenControl(cfg, d.q, log, d.relays, d.intake) // daemon_policy.go
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.ctl.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.startBackground(ctx)
	return d, nil
}

// startBackground runs the maildrop watcher and the delivery workers.
func (d *daemon) startBackground(ctx context.Context) {
	notifier, noticesDone := d.startNotifier(ctx) // daemon_policy.go
	deliverer := delivery.New(delivery.Options{
		Queue:     d.q,
		Transport: d.transport,
		Relay:     d.relay,
		Workers:   d.cfg.Delivery.Workers,
		Retry: delivery.RetryPolicy{
			InitialInterval: d.cfg.Retry.InitialInterval.Duration,
			Multiplier:      d.cfg.Retry.Multiplier,
			MaxInterval:     d.cfg.Retry.MaxInterval.Duration,
			MaxLifetime:     d.cfg.Retry.MaxLifetime.Duration,
		},
		// An attempt must end well before its lease runs out, or the
		// message would be leased (and sent) twice.
		AttemptTimeout:  d.cfg.Delivery.LeaseTimeout.Duration * 9 / 10,
		ShutdownTimeout: d.cfg.Delivery.ShutdownTimeout.Duration,
		HoldUncertain:   d.cfg.Delivery.Uncertain == relayq.UncertainHold,
		Notifier:        notifier,
		Logger:          d.log,
	})
	d.deliverer.Store(deliverer)
	maildropDone := make(chan struct{})
	go func() {
		defer close(maildropDone)
		md := &spool.Maildrop{Dir: d.cfg.Submission.Maildrop, Queue: d.q, MaxSize: int64(d.cfg.Submission.MaxMessageSize), Hostname: d.cfg.Submission.Hostname, Log: d.log}
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
	grace := d.cfg.Delivery.ShutdownTimeout.Duration
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	errs := []error{d.intake.Shutdown(ctx)}
	d.cancel()
	<-d.done
	errs = append(errs, d.ctl.Close(), d.transport.Close(), d.q.Close())
	return errors.Join(errs...)
}
