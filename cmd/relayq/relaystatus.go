package main

import (
	"time"

	"relayq/control"
	"relayq/delivery"
)

// relays answers the relay part of `relayq status` from the deliverer
// (control.Options.Relays): nothing until delivery has started.
func (d *daemon) relays() []control.RelayStatus {
	dv := d.deliverer.Load()
	if dv == nil {
		return nil
	}
	var out []control.RelayStatus
	for _, st := range dv.RelayStatuses() {
		out = append(out, relayStatus(st))
	}
	return out
}

// relayStatus carries delivery's view of a relay over the control socket.
func relayStatus(st delivery.RelayStatus) control.RelayStatus {
	timeOrNil := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return control.RelayStatus{
		Relay: st.Relay, ID: st.ID, State: st.State, PausedUntil: timeOrNil(st.PausedUntil), Failures: st.Failures,
		LastAttempt: timeOrNil(st.LastAttempt), LastReply: st.LastReply,
	}
}

// endPauses is control.Options.Flush: `relayq flush` ends every relay's
// pause, so that a relay that is back gets the mail at once rather than
// after the pause. Nothing until delivery has started.
func (d *daemon) endPauses() {
	if dv := d.deliverer.Load(); dv != nil {
		dv.EndPauses()
	}
}
