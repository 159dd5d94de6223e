package delivery

import (
	"context"
	"time"

	"relayq/queue"
	"relayq/route"
	"relayq/transport"
)

// A message whose recipients go to different relays is sent in parts: a
// part is the set of its pending recipients that share a route. Each part
// is its own transaction, to the first usable relay of its route
// (failover), and its own history entry naming that relay; each recipient
// keeps its own state, as always.

// group is the recipients of one message that share a route.
type group struct {
	route route.Route
	rcpts []string
}

// groups splits m's pending recipients (each address once) by route, in
// the order of their first recipient.
func groups(m *queue.Message, routes *route.Table) []group {
	return groupAddresses(m.From, pendingAddresses(m), routes)
}

// groupAddresses splits rcpts of a message from sender by route, in the
// order of their first recipient.
func groupAddresses(sender string, rcpts []string, routes *route.Table) []group {
	var out []group
	index := map[string]int{}
	for _, addr := range rcpts {
		r := routes.Match(sender, addr)
		i, ok := index[r.Name]
		if !ok {
			i = len(out)
			index[r.Name] = i
			out = append(out, group{route: r})
		}
		out[i].rcpts = append(out[i].rcpts, addr)
	}
	return out
}

// sentPart is what became of one part.
type sentPart struct {
	route     string
	relay     string // the name of the relay that answered (or that is waited for)
	attempt   queue.Attempt
	verdicts  map[string]verdict
	waitUntil time.Time // with waiting verdicts: when a relay may be tried
}

// sendPart sends g to the first usable relay of its route. A relay that is
// down (its breaker open) is skipped; one that fails as a whole (refused
// connection, greeting, TLS, EHLO or AUTH failure, 421) is marked down and
// the next is tried in the same attempt. When no relay could be tried, the
// recipients wait (no attempt counted) until one may be probed.
// interrupted reports that shutdown cut the part short.
func (d *Deliverer) sendPart(ctx context.Context, l *queue.Lease, relay *relayInUse, g group, body attemptBody) (p sentPart, interrupted bool) {
	p = sentPart{route: g.route.Name}
	var last *sentPart
	for i, id := range g.route.Relays {
		ep, ok := relay.endpoint(id)
		if !ok {
			d.opts.Logger.Error("route names an unknown relay; skipped", "route", g.route.Name, "relay", id)
			continue
		}
		if p.relay == "" {
			p.relay = ep.Name
		}
		pause := d.pauseOf(id)
		usable, probe, retry := pause.acquire(d.opts.Now())
		if !usable {
			if p.waitUntil.IsZero() || retry.Before(p.waitUntil) {
				p.waitUntil = retry
			}
			continue
		}
		res, start, err := d.send(ctx, l, ep, g, relay.Senders, body)
		if probe {
			pause.endProbe()
		}
		if err == nil || ctx.Err() == nil {
			d.noteRelay(id, ep.Name, probe, res, err) // pause.go
		}
		if err != nil && ctx.Err() != nil {
			return sentPart{relay: ep.Name}, true
		}
		sent := sentPart{route: g.route.Name, relay: ep.Name, verdicts: verdictsOf(g.rcpts, res, err),
			attempt: queue.Attempt{Time: start, Relay: ep.Name, Duration: d.opts.Now().Sub(start), Transcript: transcriptOf(res, err)}}
		if err != nil && sessionFailure(err) {
			d.wait(id, l.ID)
			if i+1 < len(g.route.Relays) {
				d.opts.Logger.Warn("relay failed; trying the next relay of the route", "id", l.ID, "route", g.route.Name, "relay", ep.Name, "err", err)
			}
			last = &sent
			continue
		}
		return sent, false
	}
	if last != nil {
		return *last, false // every relay tried failed as a whole: deferred as usual
	}
	for _, id := range g.route.Relays {
		d.wait(id, l.ID)
	}
	p.verdicts = make(map[string]verdict, len(g.rcpts))
	for _, addr := range g.rcpts {
		p.verdicts[addr] = verdict{result: queue.Waiting}
	}
	return p, false
}

// send is one transaction of g's recipients to ep, with the sender policy
// of g's route applied on the way out (outgoing.go).
func (d *Deliverer) send(ctx context.Context, l *queue.Lease, ep Endpoint, g group, senders map[string]SenderPolicy, stored attemptBody) (*transport.Result, time.Time, error) {
	from, body, size, err := outgoing(senders[g.route.Name], l.From, stored.reader(), l.Size)
	if err != nil {
		return nil, d.opts.Now(), err
	}
	msg := &transport.Message{
		From:       from,
		Recipients: g.rcpts,
		Body:       body,
		Size:       size,
		UTF8:       l.UTF8,
		EightBit:   l.EightBit,
	}
	setDSN(msg, l.Message)
	attemptCtx, cancel := context.WithTimeout(ctx, d.opts.AttemptTimeout)
	defer cancel()
	start := d.opts.Now()
	res, err := ep.Transport.Send(attemptCtx, msg)
	return res, start, err
}

// verdictsOf classifies a transaction's result per recipient.
func verdictsOf(rcpts []string, res *transport.Result, err error) map[string]verdict {
	out := make(map[string]verdict, len(rcpts))
	for i, addr := range rcpts {
		if err != nil {
			out[addr] = classifyTransaction(err)
		} else {
			out[addr] = classifyRecipient(res.Recipients[i])
		}
	}
	return out
}
