package control

import (
	"fmt"
	"path"
	"strings"
	"time"

	"relayq/queue"
)

// The listings (queue list, dead list, mailq) answer a page at a time:
// at most MaxPage items, from Request.After on, with Response.Next to go
// on from. The daemon reads one page of records per request, so a
// listing of a million messages costs it no more memory than one of a
// thousand, and the client prints each page as it comes.

// pageOf turns the paging and age fields of req into the store's page
// options.
func pageOf(req Request, now time.Time) (queue.PageOptions, error) {
	if req.After != "" && !queue.ValidID(req.After) {
		return queue.PageOptions{}, fmt.Errorf("after: %q is not a queue ID", req.After)
	}
	if req.OlderThan < 0 {
		return queue.PageOptions{}, fmt.Errorf("older than %s: must not be negative", req.OlderThan)
	}
	o := queue.PageOptions{After: req.After, Limit: req.Limit}
	if o.Limit <= 0 || o.Limit > MaxPage {
		o.Limit = MaxPage
	}
	if req.OlderThan > 0 {
		o.CreatedBefore = now.Add(-req.OlderThan)
	}
	return o, nil
}

// rcptMatcher is the Rcpt filter: nil for none; a glob (path.Match) when
// the pattern holds * ? or [, else a substring; case is ignored.
func rcptMatcher(pattern string) (func([]queue.Recipient, bool) bool, error) {
	if pattern == "" {
		return nil, nil
	}
	pattern = strings.ToLower(pattern)
	match := func(addr string) bool { return strings.Contains(strings.ToLower(addr), pattern) }
	if strings.ContainsAny(pattern, "*?[") {
		if _, err := path.Match(pattern, ""); err != nil {
			return nil, fmt.Errorf("recipient pattern %q: %w", pattern, err)
		}
		match = func(addr string) bool { ok, _ := path.Match(pattern, strings.ToLower(addr)); return ok }
	}
	return func(rs []queue.Recipient, pendingOnly bool) bool {
		for _, r := range rs {
			if (!pendingOnly || r.Status.Pending()) && match(r.Address) {
				return true
			}
		}
		return false
	}, nil
}

// listing is what every listing checks first: its page and its filter.
func listing(req Request) (queue.PageOptions, func([]queue.Recipient, bool) bool, *Response) {
	o, err := pageOf(req, time.Now())
	if err != nil {
		r := badRequest("%v", err)
		return o, nil, &r
	}
	rcpt, err := rcptMatcher(req.Rcpt)
	if err != nil {
		r := badRequest("%v", err)
		return o, nil, &r
	}
	return o, rcpt, nil
}

func (s *Server) queueList(req Request) Response {
	var state queue.State
	if req.State != "" {
		var err error
		if state, err = queue.ParseState(req.State); err != nil {
			return badRequest("%v", err)
		}
	}
	o, rcpt, bad := listing(req)
	if bad != nil {
		return *bad
	}
	p, err := s.q.MessagePage(o, func(m *queue.Message) bool {
		return (state == "" || m.State() == state) && (rcpt == nil || rcpt(m.Recipients, false))
	})
	if err != nil {
		return failed(err)
	}
	for _, m := range p.Items {
		m.History = nil
	}
	t, err := s.q.Totals()
	if err != nil {
		return failed(err)
	}
	return Response{Messages: p.Items, Next: p.Next, Total: t.Messages, TotalBytes: t.Bytes}
}

func (s *Server) deadList(req Request) Response {
	if req.State != "" {
		return badRequest("dead list takes no state")
	}
	o, rcpt, bad := listing(req)
	if bad != nil {
		return *bad
	}
	p, err := s.q.DeadPage(o, func(d *queue.DeadLetter) bool { return rcpt == nil || rcpt(d.Recipients, false) })
	if err != nil {
		return failed(err)
	}
	for _, d := range p.Items {
		d.Record = nil
	}
	t, err := s.q.Totals()
	if err != nil {
		return failed(err)
	}
	return Response{Dead: p.Items, Next: p.Next, Total: t.Dead}
}

func (s *Server) mailq(req Request) Response { return mailqPage(s.q, req) }

// MailqFile answers a mailq request (a page of it) from the queue file of
// a relayq that is not running, as the daemon answers it.
func MailqFile(r *queue.FileReader, req Request) Response { return mailqPage(r, req) }

// messagePages is where a mailq page is read from: the running queue, or
// the file of a stopped one.
type messagePages interface {
	MessagePage(queue.PageOptions, func(*queue.Message) bool) (queue.Page[*queue.Message], error)
	Totals() (queue.Totals, error)
}

func mailqPage(src messagePages, req Request) Response {
	if req.State != "" {
		return badRequest("mailq takes no state")
	}
	o, rcpt, bad := listing(req)
	if bad != nil {
		return *bad
	}
	p, err := src.MessagePage(o, func(m *queue.Message) bool { return rcpt == nil || rcpt(m.Recipients, true) })
	if err != nil {
		return failed(err)
	}
	for i, m := range p.Items {
		p.Items[i] = MailqView(m)
	}
	t, err := src.Totals()
	if err != nil {
		return failed(err)
	}
	return Response{Messages: p.Items, Next: p.Next, Total: t.Messages, TotalBytes: t.Bytes}
}
