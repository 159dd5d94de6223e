package delivery

import (
	"slices"

	"relayq/queue"
)

// heldUncertain logs, once per attempt, that a message was put on hold
// because the relay may have it ([delivery] uncertain = "hold"), and what
// the operator does next.
func (e *eventLog) heldUncertain(m *queue.Message, relay string, outcomes []queue.Outcome) {
	if !slices.ContainsFunc(outcomes, func(o queue.Outcome) bool { return o.Hold && o.Result == queue.Deferred }) {
		return
	}
	e.l.Warn("message held: the connection was lost after the final dot, so the relay may have it; "+
		"check the relay's log, then `relayq queue release` (send again) or `relayq queue delete`",
		"id", m.ID, "relay", relay)
}
