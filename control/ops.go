package control

import (
	"errors"
	"fmt"
	"io"
	"time"

	"relayq/queue"
)

// Codes in Response.Code and Result.Code: why a request, or one ID in it,
// failed, in a word a client can map to an exit status.
const (
	CodeBadRequest = "bad_request" // unknown op, bad state or reply class, no IDs
	CodeDenied     = "denied"      // the peer may not use the control socket
	CodeNotFound   = "not_found"   // no such message or dead letter
	CodeLeased     = "leased"      // being delivered right now; try again
	CodeHeld       = "held"        // on hold; release it first
	CodeNotHeld    = "not_held"    // release of a message that is not on hold
	CodeDamaged    = "damaged"     // the record does not decode: only delete or expire work
	CodeInternal   = "internal"    // the store failed
	CodeConfig     = "config"      // reload: the new configuration was refused; the old one stays
	CodeFull       = "full"        // backup: no room for the copy where it goes
	CodeBusy       = "busy"        // too many connections to the mailq socket; try again
)

// Result is what an operation did to one ID. Error is empty when it was
// done.
type Result struct {
	ID    string `json:"id"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// Status answers OpStatus: the queue at a glance.
type Status struct {
	Queued   int `json:"queued"`
	Deferred int `json:"deferred"`
	Held     int `json:"held"`
	Active   int `json:"active"`
	// Uncertain counts messages with a recipient that may have been
	// delivered (the connection was lost after the final dot).
	Uncertain int `json:"uncertain"`
	// Damaged counts message records that do not decode (queue
	// StateDamaged): never delivered until an operator deletes or
	// expires them.
	Damaged int `json:"damaged"`
	// Pending counts the recipients still to be delivered, and Bytes the
	// size of the queued messages.
	Pending int   `json:"pending"`
	Bytes   int64 `json:"bytes"`
	// Oldest is when the oldest queued message was created.
	Oldest *time.Time `json:"oldest,omitempty"`
	// OldestDeferred is when the oldest message that was tried and is not
	// delivered yet entered the queue (or was requeued), held ones aside.
	OldestDeferred *time.Time `json:"oldest_deferred,omitempty"`
	Dead           int        `json:"dead"`
	// DeadDamaged counts the dead letters (among Dead) whose record
	// does not decode.
	DeadDamaged int       `json:"dead_damaged"`
	DeadLastDay int       `json:"dead_last_day"`
	DBSize      int64     `json:"db_size"`
	Started     time.Time `json:"started"`
	Now         time.Time `json:"now"`
	// Relays is each relay's state and last result (Options.Relays);
	// absent when the daemon did not say.
	Relays []RelayStatus `json:"relays,omitempty"`
	// Limits is what each submitter used of its [limits] (Options.Limits);
	// absent when no limit is set.
	Limits []LimitStatus `json:"limits,omitempty"`
	// Space is the queue's file system: free space, the headroom kept
	// ([queue] min_free) and whether intake refuses for lack of room.
	Space SpaceStatus `json:"space"`
	// Memory is the message bodies intake holds now against its budget
	// ([submission] max_memory; Options.Memory); absent without one.
	Memory *MemoryStatus `json:"memory,omitempty"`
}

// MemoryStatus is intake's memory budget for message bodies in flight.
type MemoryStatus struct {
	InFlight int64 `json:"in_flight"` // bytes reserved by messages being received
	Max      int64 `json:"max"`       // the budget
}

// SpaceStatus is the room the queue has (queue.Space).
type SpaceStatus struct {
	Free     int64 `json:"free"`      // bytes free on the queue's file system
	FileFree int64 `json:"file_free"` // bytes in free pages inside the queue file
	MinFree  int64 `json:"min_free"`  // [queue] min_free; 0: none kept
	Reserve  int64 `json:"reserve"`   // bytes held in the reserve file; 0 when used up
	// Refusing says that intake answers 452 4.3.1 for lack of room.
	Refusing bool   `json:"refusing"`
	Err      string `json:"error,omitempty"` // statfs failed
}

// LimitStatus is one submitter's use of its [limits]: every submitter with
// a rule of its own, and any other with mail counted.
type LimitStatus struct {
	// Submitter is "uid 1000", "user alice", "unit cron.service" or "TCP
	// submissions", as the 452 replies name it.
	Submitter string `json:"submitter"`
	// MessagesLastHour counts what it sent in the last hour, against
	// MessagesPerHour (0: no cap). Both absent when no limit counts
	// messages.
	MessagesLastHour *int `json:"messages_last_hour,omitempty"`
	MessagesPerHour  int  `json:"messages_per_hour,omitempty"`
	// QueuedBytes is the size of its queued messages, against
	// QueuedBytesLimit (0: no cap); absent when no limit counts bytes.
	QueuedBytes      *int64 `json:"queued_bytes,omitempty"`
	QueuedBytesLimit int64  `json:"queued_bytes_limit,omitempty"`
	// Refused counts its submissions refused over a limit since the
	// daemon started, the last at LastRefused.
	Refused     int64      `json:"refused"`
	LastRefused *time.Time `json:"last_refused,omitempty"`
}

// RelayStatus is one relay as delivery sees it.
type RelayStatus struct {
	Relay string `json:"relay"`        // its URL, without credentials ("ID (url)" with several relays)
	ID    string `json:"id,omitempty"` // the relay's id: "default" for [relay]
	// State is "ok", "paused" (no attempt before PausedUntil) or
	// "probing" (one message at a time until one gets through).
	State       string     `json:"state"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// Failures counts the relay's failures in a row; 0 once an attempt
	// got through.
	Failures int `json:"failures"`
	// LastAttempt is when the latest attempt ended, and LastReply its
	// result: the relay's reply, or a local failure (Code 0) such as a
	// refused connection. Both absent before the first attempt.
	LastAttempt *time.Time   `json:"last_attempt,omitempty"`
	LastReply   *queue.Reply `json:"last_reply,omitempty"`
}

func failed(err error) Response {
	return Response{Error: err.Error(), Code: CodeInternal}
}

func badRequest(format string, args ...any) Response {
	return Response{Error: fmt.Sprintf(format, args...), Code: CodeBadRequest}
}

// show answers queue show and dead show alike: the message record and the
// dead letter, whichever exist, and the body when asked.
func (s *Server) show(req Request) Response {
	if len(req.IDs) != 1 {
		return badRequest("%s takes one ID", req.Op)
	}
	id := req.IDs[0]
	var resp Response
	m, err := s.q.Get(id)
	switch {
	case err == nil:
		resp.Message = m
	case errors.Is(err, queue.ErrRecordDamaged):
		resp.Message = m // the stand-in: show says what it can
	case !errors.Is(err, queue.ErrNotFound):
		return failed(err)
	}
	d, err := s.q.GetDead(id)
	switch {
	case err == nil, errors.Is(err, queue.ErrRecordDamaged):
		resp.DeadLetter = d // a damaged one's stand-in: show says what it can
	case !errors.Is(err, queue.ErrNotFound):
		return failed(err)
	}
	if resp.Message == nil && resp.DeadLetter == nil {
		return Response{Error: fmt.Sprintf("%s: no such message", id), Code: CodeNotFound}
	}
	if req.Op == OpDeadShow && resp.DeadLetter == nil {
		return Response{Error: fmt.Sprintf("%s is in the queue, not a dead letter (relayq queue show %s)", id, id), Code: CodeNotFound}
	}
	if req.Body {
		if resp.Body, err = io.ReadAll(s.q.Body(id)); err != nil {
			return failed(err)
		}
	}
	return resp
}

func (s *Server) status() Response {
	now := time.Now()
	sum, err := s.q.Summarize(now.Add(-24 * time.Hour))
	if err != nil {
		return failed(err)
	}
	st := &Status{
		Queued: sum.Queued, Deferred: sum.Deferred, Held: sum.Held, Active: sum.Active, Uncertain: sum.Uncertain,
		Damaged: sum.Damaged, DeadDamaged: sum.DamagedDead, Pending: sum.Pending, Bytes: sum.Bytes,
		Dead: sum.Dead, DeadLastDay: sum.DeadSince, DBSize: sum.FileSize,
		Started: s.started, Now: now,
	}
	if !sum.Oldest.IsZero() {
		st.Oldest = &sum.Oldest
	}
	if !sum.OldestDeferred.IsZero() {
		st.OldestDeferred = &sum.OldestDeferred
	}
	sp := s.q.Space()
	st.Space = SpaceStatus{Free: sp.Free, FileFree: sp.FileFree, MinFree: sp.MinFree, Reserve: sp.Reserve, Refusing: sp.Refusing}
	if sp.Err != nil {
		st.Space.Err = sp.Err.Error()
	}
	if s.relays != nil {
		st.Relays = s.relays()
	}
	if s.limits != nil {
		st.Limits = s.limits()
	}
	if s.memory != nil {
		if used, max := s.memory(); max > 0 {
			st.Memory = &MemoryStatus{InFlight: used, Max: max}
		}
	}
	return Response{Status: st}
}

// change runs an operation that changes the queue, and logs who asked for
// what and what came of it.
func (s *Server) change(req Request, uid int) Response {
	resp := s.run(req)
	args := []any{"op", req.Op, "uid", uid}
	if req.All {
		args = append(args, "all", true)
	}
	if req.Class != "" {
		args = append(args, "class", req.Class)
	}
	var done, refused []string
	for _, r := range resp.Results {
		if r.Error == "" {
			done = append(done, r.ID)
		} else {
			refused = append(refused, r.ID+" ("+r.Code+")")
		}
	}
	args = append(args, "ids", done)
	if len(refused) > 0 {
		args = append(args, "refused", refused)
	}
	if req.Op == OpDeadPurge && len(req.IDs) == 0 {
		args = append(args, "older_than", req.OlderThan, "purged", resp.Purged)
	}
	if req.Op == OpQueueRetry && req.All {
		args = append(args, "due", resp.Due)
	}
	if resp.Error != "" {
		args = append(args, "err", resp.Error)
	}
	s.log.Info("control: queue changed by operator", args...)
	return resp
}

func (s *Server) run(req Request) Response {
	// dead purge may also name its dead letters by age instead; never
	// by nothing, which once purged them all.
	selected := req.All || (req.Op == OpDeadPurge && req.OlderThan > 0)
	if selected == (len(req.IDs) > 0) {
		return badRequest("%s takes IDs or all, not both nor neither", req.Op)
	}
	var class queue.ReplyClass
	if req.Class != "" {
		if req.Op != OpDeadRequeue {
			return badRequest("%s takes no reply class", req.Op)
		}
		var err error
		if class, err = queue.ParseReplyClass(req.Class); err != nil {
			return badRequest("%v", err)
		}
	}
	var res []queue.IDResult
	var err error
	switch {
	case req.Op == OpQueueRetry && req.All:
		if s.flush != nil {
			s.flush() // first: a message made due must not meet a pause
		}
		n, err := s.q.RetryAll()
		if err != nil {
			return failed(err)
		}
		return Response{Due: n}
	case req.Op == OpDeadRequeue && req.All:
		res, err = s.q.RequeueAll(class)
	case req.Op == OpDeadPurge && len(req.IDs) == 0:
		n, err := s.q.PurgeDead(req.OlderThan)
		if err != nil {
			return failed(err)
		}
		return Response{Purged: n}
	case req.All:
		return badRequest("%s takes IDs", req.Op)
	default:
		res, err = s.byID(req, class)
	}
	if err != nil {
		return failed(err)
	}
	return Response{Results: results(res)}
}

func (s *Server) byID(req Request, class queue.ReplyClass) ([]queue.IDResult, error) {
	var bad []queue.IDResult
	var ids []string
	for _, id := range req.IDs {
		if queue.ValidID(id) {
			ids = append(ids, id)
		} else {
			bad = append(bad, queue.IDResult{ID: id, Err: fmt.Errorf("%q is not a queue ID: %w", id, queue.ErrNotFound)})
		}
	}
	ops := map[string]func([]string) ([]queue.IDResult, error){
		OpQueueRetry:   s.q.Retry,
		OpQueueHold:    s.q.Hold,
		OpQueueRelease: s.q.Unhold,
		OpQueueDelete:  s.q.Delete,
		OpQueueExpire:  s.q.Expire,
		OpDeadRequeue:  func(ids []string) ([]queue.IDResult, error) { return s.q.Requeue(ids, class) },
		OpDeadPurge:    s.q.DeleteDead,
	}
	res, err := ops[req.Op](ids)
	return append(res, bad...), err
}

func results(res []queue.IDResult) []Result {
	out := make([]Result, 0, len(res))
	for _, r := range res {
		it := Result{ID: r.ID}
		if r.Err != nil {
			it.Error = r.Err.Error()
			switch {
			case errors.Is(r.Err, queue.ErrLeased):
				it.Code = CodeLeased
			case errors.Is(r.Err, queue.ErrHeld):
				it.Code = CodeHeld
			case errors.Is(r.Err, queue.ErrNotHeld):
				it.Code = CodeNotHeld
			case errors.Is(r.Err, queue.ErrRecordDamaged):
				it.Code = CodeDamaged
			default:
				it.Code = CodeNotFound
			}
		}
		out = append(out, it)
	}
	return out
}

// MailqView is what Postfix's mailq shows any local user of a message: its
// ID, size, arrival time, sender, whether it is being delivered or held, and
// the recipients still to be delivered with the relay's last reply. The
// submitter, the attempt history, the DSN options and the recipients done
// with are left out.
func MailqView(m *queue.Message) *queue.Message {
	v := &queue.Message{ID: m.ID, From: m.From, Created: m.Created, Size: m.Size, Held: m.Held, LeasedUntil: m.LeasedUntil}
	for _, r := range m.Recipients {
		if r.Status.Pending() {
			v.Recipients = append(v.Recipients, queue.Recipient{Address: r.Address, Status: r.Status, LastReply: r.LastReply})
		}
	}
	return v
}
