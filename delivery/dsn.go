package delivery

import (
	"relayq/queue"
	"relayq/transport"
)

// setDSN copies the submission's DSN request (RFC 3461) from the queued
// message to the transport message: RET and ENVID, and NOTIFY and ORCPT
// of each recipient in msg.Recipients. The transport passes them on when
// the relay offers DSN.
func setDSN(msg *transport.Message, m *queue.Message) {
	msg.DSN = transport.DSN{Return: m.DSN.Return, EnvelopeID: m.DSN.EnvelopeID}
	byAddr := make(map[string]queue.RecipientDSN)
	for _, r := range m.Recipients {
		if _, seen := byAddr[r.Address]; !seen && !r.DSN.IsZero() {
			byAddr[r.Address] = r.DSN
		}
	}
	if len(byAddr) == 0 {
		return
	}
	msg.RecipientDSN = make([]transport.RecipientDSN, len(msg.Recipients))
	for i, addr := range msg.Recipients {
		d := byAddr[addr]
		msg.RecipientDSN[i] = transport.RecipientDSN{Notify: d.Notify, OrigType: d.OrigType, Orig: d.Orig}
	}
}
