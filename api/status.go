package api

import (
	"errors"
	"net/http"
	"os"
	"time"

	"relayq/queue"
)

// messageStatus is GET /v1/messages/{id}: what `relayq queue status --json`
// shows, per recipient.
type messageStatus struct {
	ID         string       `json:"id"`
	State      string       `json:"state"` // queued, deferred, held, active, uncertain, delivered, dead, deleted, damaged
	Created    time.Time    `json:"created"`
	Left       *time.Time   `json:"left,omitempty"`
	Reason     string       `json:"reason,omitempty"` // why a dead message died when no reply says it (corrupt, damaged)
	Recipients []rcptStatus `json:"recipients"`
}

type rcptStatus struct {
	Address  string       `json:"address"`
	Status   string       `json:"status"` // queued, deferred, uncertain, delivered, dead
	Attempts int          `json:"attempts"`
	Time     *time.Time   `json:"time,omitempty"` // of the last attempt
	Relay    string       `json:"relay,omitempty"`
	Reply    *queue.Reply `json:"reply,omitempty"` // the last reply: the relay's acceptance, the deferral, or why it died
	RelayID  string       `json:"relay_id,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	cl, _ := r.Context().Value(viaKey{}).(caller)
	id := r.PathValue("id")
	if !queue.ValidID(id) {
		writeError(w, http.StatusBadRequest, "bad_id", "not a queue ID", "id")
		return
	}
	l, err := s.opts.Queue.Lookup(id)
	switch {
	case errors.Is(err, queue.ErrNotFound), err == nil && !cl.maySee(submitterOf(l)):
		writeError(w, http.StatusNotFound, "not_found", "no such message, and none delivered or dead within the history retention", "id")
		return
	case err != nil:
		s.log.Error("cannot look up message", "id", id, "err", err)
		writeAPIError(w, &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "temporary local problem, try again later", RetryAfter: 30})
		return
	}
	writeJSON(w, http.StatusOK, statusOf(id, l))
}

// statusOf condenses a lookup: the live message, else its archive record,
// else its dead letter.
func statusOf(id string, l *queue.Lookup) messageStatus {
	st := messageStatus{ID: id, Recipients: []rcptStatus{}}
	switch {
	case l.Message != nil:
		m := l.Message
		st.State, st.Created = string(m.State()), m.Created
		for _, r := range m.Recipients {
			st.Recipients = append(st.Recipients, rcpt(r.Address, r.Status, r.Attempts, r.LastAttempt, r.Relay, r.LastReply))
		}
	case l.Archived != nil:
		a := l.Archived
		st.State, st.Created, st.Left = string(a.Fate), a.Created, &a.Left
		for _, r := range a.Recipients {
			rs := rcpt(r.Address, r.Status, r.Attempts, r.Time, r.Relay, r.Reply)
			rs.RelayID = r.RelayID
			st.Recipients = append(st.Recipients, rs)
		}
	default:
		d := l.Dead
		st.State, st.Created, st.Reason = string(queue.FateDead), d.Created, d.Reason
		for _, r := range d.Recipients {
			st.Recipients = append(st.Recipients, rcpt(r.Address, r.Status, r.Attempts, r.LastAttempt, "", r.LastReply))
		}
	}
	return st
}

func rcpt(addr string, status queue.Status, attempts int, last time.Time, relay string, reply *queue.Reply) rcptStatus {
	rs := rcptStatus{Address: addr, Status: string(status), Attempts: attempts, Relay: relay, Reply: reply}
	if !last.IsZero() {
		rs.Time = &last
	}
	if status == queue.StatusDelivered && rs.RelayID == "" {
		rs.RelayID = queue.RelayQueueID(reply)
	}
	return rs
}

// submitterOf is who queued the message the lookup found.
func submitterOf(l *queue.Lookup) queue.Submitter {
	switch {
	case l.Message != nil:
		return l.Message.Submitter
	case l.Archived != nil:
		return l.Archived.Submitter
	case l.Dead != nil:
		return l.Dead.Submitter
	}
	return queue.Submitter{UID: -1}
}

// maySee reports whether the caller may read the status of a message
// from sub: on the socket, root and the daemon's own user see every
// message, other users only their own (as mailq shows them); a TCP caller
// holds the token and sees every message. Others get 404, as for an
// unknown ID, so IDs cannot be probed.
func (c caller) maySee(sub queue.Submitter) bool {
	return c.tcp || c.uid == 0 || c.uid == os.Getuid() || c.uid == sub.UID && c.uid >= 0
}
