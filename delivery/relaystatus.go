package delivery

import (
	"errors"
	"time"

	"relayq/queue"
	"relayq/transport"
)

// States of the relay in RelayStatus.State.
const (
	// RelayOK: the last attempt got through to the relay (or there was
	// none yet); deliveries go out at full speed.
	RelayOK = "ok"
	// RelayPaused: the relay failed (connection, greeting, TLS, EHLO,
	// AUTH, 421) and no attempt goes out until RelayStatus.PausedUntil.
	RelayPaused = "paused"
	// RelayProbing: the pause is over, and one message at a time goes out
	// until one gets through.
	RelayProbing = "probing"
)

// RelayStatus is what delivery knows of its relay right now, for `relayq
// status`.
type RelayStatus struct {
	Relay string // as Options.Relay or Endpoint.Name names it
	ID    string // the relay's id (DefaultRelay for a single relay)
	State string // RelayOK, RelayPaused or RelayProbing
	// PausedUntil, with RelayPaused, is when the next attempt may go.
	PausedUntil time.Time
	// Failures counts the relay's failures in a row (session failures, as
	// the pause counts them); 0 once an attempt got through.
	Failures int
	// LastAttempt is when the latest attempt ended; zero before the
	// first.
	LastAttempt time.Time
	// LastReply is that attempt's result: the relay's reply (the final
	// one when the message went through, else the refusal), or a local
	// failure such as a refused connection (Code 0, the error in Lines);
	// nil before the first attempt.
	LastReply *queue.Reply
}

// lastResult is the latest attempt's result as relayPause keeps it.
type lastResult struct {
	at    time.Time
	reply *queue.Reply
}

// RelayStatus reports the first relay's state and the latest attempt's
// result (RelayStatuses has every relay's). It only reads; it is safe to
// call while Run is delivering.
func (d *Deliverer) RelayStatus() RelayStatus {
	return d.RelayStatuses()[0]
}

// RelayStatuses reports each relay's state, in the order of the
// configuration; Relay is the relay's name, ID its id.
func (d *Deliverer) RelayStatuses() []RelayStatus {
	d.mu.Lock()
	eps := d.cur.Endpoints
	d.mu.Unlock()
	out := make([]RelayStatus, len(eps))
	for i, ep := range eps {
		out[i] = d.pauseOf(ep.ID).status(d.opts.Now())
		out[i].Relay, out[i].ID = ep.Name, ep.ID
	}
	return out
}

func (p *relayPause) status(now time.Time) RelayStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := RelayStatus{State: RelayOK, Failures: p.failures, LastAttempt: p.last.at, LastReply: p.last.reply}
	switch {
	case p.interval == 0:
	case now.Before(p.until):
		st.State, st.PausedUntil = RelayPaused, p.until
	default:
		st.State = RelayProbing
	}
	return st
}

// noteResult keeps the result of an attempt that ended at now.
func (p *relayPause) noteResult(now time.Time, res *transport.Result, err error) {
	reply := resultReply(res, err)
	if reply == nil {
		return // nothing was said to the relay (every address refused locally)
	}
	p.mu.Lock()
	p.last = lastResult{at: now, reply: reply}
	p.mu.Unlock()
}

// resultReply is what the relay said to an attempt as a whole: the failure
// of the transaction; else the reply after the dot when some recipient was
// accepted; else the first recipient's refusal. nil when no recipient was
// sent at all.
func resultReply(res *transport.Result, err error) *queue.Reply {
	if err != nil {
		return replyOf(err)
	}
	var refused error
	for _, r := range res.Recipients {
		var local *transport.LocalError
		switch {
		case r.Err == nil:
			return successReply(r.Reply)
		case refused == nil && !errors.As(r.Err, &local):
			refused = r.Err
		}
	}
	if refused == nil {
		return nil
	}
	return replyOf(refused)
}

// transcriptOf is the exchange of an attempt, for its history entry.
func transcriptOf(res *transport.Result, err error) string {
	if err == nil {
		return res.Transcript
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.Transcript
	}
	return ""
}
