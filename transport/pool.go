package transport

import (
	"context"
	"slices"
	"sync"
	"time"
)

// quitTimeout bounds the QUIT sent to a connection being retired.
const quitTimeout = 5 * time.Second

// acquire returns a ready connection: an idle one from the pool (checked
// with NOOP if it sat for IdleCheck), or a new one if fewer than
// MaxConnections are open; otherwise it waits for one within ctx.
func (t *Transport) acquire(ctx context.Context) (*conn, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, &Error{Stage: StageDial, Err: ErrClosed}
		}
		if n := len(t.idle); n > 0 {
			c := t.idle[n-1]
			t.idle = t.idle[:n-1]
			t.mu.Unlock()
			c.tr.addString(dirNote, "reusing a pooled connection")
			if t.usable(ctx, c) {
				c.reused = true
				return c, nil
			}
			t.retire(c, false)
			continue
		}
		if t.open < t.opts.MaxConnections {
			t.open++
			t.mu.Unlock()
			c, err := t.dial(ctx)
			if err != nil {
				t.freeSlot()
				return nil, err
			}
			return c, nil
		}
		wake := make(chan struct{}, 1)
		t.waiting = append(t.waiting, wake)
		t.mu.Unlock()
		select {
		case <-wake:
			t.woken.Add(1)
		case <-ctx.Done():
			t.giveUp(wake)
			return nil, &Error{Stage: StageDial, Err: ctx.Err()}
		}
	}
}

// giveUp takes a Send that stops waiting out of the line; if it had been
// woken already, the next one is woken in its place.
func (t *Transport) giveUp(wake chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.Index(t.waiting, wake); i >= 0 {
		t.waiting = slices.Delete(t.waiting, i, i+1)
		return
	}
	t.signal()
}

// usable reports whether an idle connection can carry another message.
func (t *Transport) usable(ctx context.Context, c *conn) bool {
	idle := time.Since(c.idleSince)
	if idle >= t.opts.IdleTimeout {
		return false
	}
	if idle < t.opts.IdleCheck {
		return true
	}
	unbind := c.io.bind(ctx)
	defer unbind()
	if err := c.client.Noop(); err != nil {
		t.log.Debug("idle relay connection failed its check", "conn", c.id, "idle", idle, "err", err)
		return false
	}
	return true
}

// release gives a connection back after a Send: to the pool when it is
// healthy and has room for more messages, else it is closed (always with
// NoPool: one connection per message).
func (t *Transport) release(c *conn, healthy bool) {
	if !healthy || t.opts.NoPool || c.io.aborted.Load() || c.sent >= t.opts.MaxMessages {
		t.retire(c, healthy)
		return
	}
	c.idleSince = time.Now()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.retire(c, true)
		return
	}
	t.idle = append(t.idle, c)
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.opts.IdleTimeout, t.reap)
	}
	t.signal()
	t.mu.Unlock()
}

// retire closes a connection (politely with QUIT if it is healthy) and
// frees its slot.
func (t *Transport) retire(c *conn, polite bool) {
	t.close(c, polite)
	t.freeSlot()
}

func (t *Transport) close(c *conn, polite bool) {
	if polite {
		c.client.CommandTimeout = min(t.opts.CommandTimeout, quitTimeout)
		c.client.Quit()
	}
	c.client.Close()
	t.log.Debug("relay connection closed", "conn", c.id, "relay", t.opts.Address, "messages", c.sent)
}

func (t *Transport) freeSlot() {
	t.mu.Lock()
	t.open--
	t.signal()
	t.mu.Unlock()
}

// signal wakes the Send that has waited longest for a connection, if
// any: one connection or slot has freed up, so waking every waiter would
// only send all but one back to wait (with 32 workers on 5 connections,
// most of them). t.mu is held.
func (t *Transport) signal() {
	if len(t.waiting) == 0 {
		return
	}
	t.waiting[0] <- struct{}{} // room for one: never blocks
	t.waiting = slices.Delete(t.waiting, 0, 1)
}

// signalAll wakes every waiting Send (Close); t.mu is held.
func (t *Transport) signalAll() {
	for range t.waiting {
		t.signal()
	}
}

// reap closes the connections idle for IdleTimeout and re-arms itself for
// the next one to expire.
func (t *Transport) reap() {
	now := time.Now()
	t.mu.Lock()
	var expired []*conn
	keep := t.idle[:0]
	for _, c := range t.idle {
		if now.Sub(c.idleSince) >= t.opts.IdleTimeout {
			expired = append(expired, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(t.idle[len(keep):])
	t.idle = keep
	t.reaper = nil
	if len(keep) > 0 && !t.closed {
		// keep[0] is the oldest: the order of idleSince is the order of release.
		t.reaper = time.AfterFunc(keep[0].idleSince.Add(t.opts.IdleTimeout).Sub(now), t.reap)
	}
	t.mu.Unlock()
	for _, c := range expired {
		t.log.Debug("closing idle relay connection", "conn", c.id)
		t.retire(c, true)
	}
}

// Close closes the idle connections at once and makes later Sends fail
// with ErrClosed. Connections in use are closed when their Send returns.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	idle := t.idle
	t.idle = nil
	if t.reaper != nil {
		t.reaper.Stop()
		t.reaper = nil
	}
	t.signalAll()
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() { t.retire(c, true) })
	}
	wg.Wait()
	return nil
}
