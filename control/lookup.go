package control

import (
	"errors"
	"fmt"

	"relayq/queue"
)

// lookup answers queue status: everything the store knows of one ID,
// including the record kept after the message left the queue. The dead
// letter's copy of the message record is left out.
func (s *Server) lookup(req Request) Response {
	if len(req.IDs) != 1 {
		return badRequest("%s takes one ID", req.Op)
	}
	id := req.IDs[0]
	if !queue.ValidID(id) {
		return badRequest("%q is not a queue ID", id)
	}
	l, err := s.q.Lookup(id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return Response{Error: fmt.Sprintf("%s: no such message, and none delivered or dead-lettered within the history retention", id), Code: CodeNotFound}
	case err != nil:
		return failed(err)
	}
	if l.Dead != nil {
		l.Dead.Record = nil
	}
	return Response{Lookup: l}
}
