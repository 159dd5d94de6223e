package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"relayq/control"
	"relayq/queue"
)

// The listings (queue list, dead list, mailq) ask the daemon a page at a
// time (control.MaxPage items) and print each page as it comes, so that
// a queue of a million messages neither times out nor fills either
// side's memory. A table shows the first defaultListLimit by default and
// says how to see the next ones; --json lists everything unless --limit
// says otherwise.

// defaultListLimit is how many items a listing printed as a table shows
// without --limit: enough for any queue a person reads, and quick at any
// depth.
const defaultListLimit = 1000

// pageFlags are the paging and filter flags the listings share.
type pageFlags struct {
	limit     *limitFlag
	after     *string
	rcpt      *string
	olderThan *time.Duration
}

func addPageFlags(fs *flag.FlagSet, what string) pageFlags {
	limit := &limitFlag{}
	fs.Var(limit, "limit", fmt.Sprintf("show at most `N` %s (default %d in a table, all with --json; 0: all)", what, defaultListLimit))
	return pageFlags{
		limit: limit,
		after: fs.String("after", "", "start after the message with this `ID` (the next page, as the listing says)"),
		rcpt: fs.String("rcpt", "", "only "+what+" with a recipient containing this `text`, or matching it\n"+
			"when it holds * ? or [ (a glob: '*@example.com'); case is ignored"),
		olderThan: fs.Duration("older-than", 0, "only "+what+" that arrived at least this `duration` ago (1h)"),
	}
}

// limitFlag is --limit: a count, 0 or more, and whether it was given.
type limitFlag struct {
	n   int
	set bool
}

func (l *limitFlag) String() string {
	if l == nil || !l.set {
		return ""
	}
	return strconv.Itoa(l.n)
}

func (l *limitFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a count (0 or more)", s)
	}
	l.n, l.set = n, true
	return nil
}

// request fills the paging and filter fields of req; "" when they are
// sound, else why not.
func (f pageFlags) request(req control.Request) (control.Request, string) {
	if *f.after != "" && !queue.ValidID(*f.after) {
		return req, fmt.Sprintf("--after: %q is not a queue ID", *f.after)
	}
	if *f.olderThan < 0 {
		return req, "--older-than must not be negative"
	}
	req.After, req.Rcpt, req.OlderThan = *f.after, *f.rcpt, *f.olderThan
	return req, ""
}

// filtered reports whether a filter leaves some of the store out.
func (f pageFlags) filtered(req control.Request) bool {
	return req.State != "" || req.Rcpt != "" || req.OlderThan > 0
}

// limitFor is the --limit in force: the default depends on whether the
// listing is a table.
func (f pageFlags) limitFor(asJSON bool) int {
	switch {
	case f.limit.set:
		return f.limit.n
	case asJSON:
		return 0
	}
	return defaultListLimit
}

// listed is where a listing stopped: how many items it printed and,
// when limit cut it short, the After of the next page; first is the
// first answer (its totals).
type listed struct {
	shown int
	next  string
	first *control.Response
}

// pages asks call for the listing req names, a page at a time, handing
// each answer to each, until limit items (0: all) were handed over or
// the listing is over. code is exitOK or why it failed.
func pages(req control.Request, limit int, call func(control.Request) (*control.Response, int), each func(*control.Response) error) (l listed, code int) {
	for {
		req.Limit = control.MaxPage
		if limit > 0 {
			req.Limit = min(limit-l.shown, control.MaxPage)
		}
		resp, code := call(req)
		if code != exitOK {
			return l, code
		}
		if l.first == nil {
			l.first = resp
		}
		if err := each(resp); err != nil {
			return l, exitIOErr
		}
		l.shown += len(resp.Messages) + len(resp.Dead)
		l.next = resp.Next
		if resp.Next == "" || (limit > 0 && l.shown >= limit) {
			return l, exitOK
		}
		req.After = resp.Next
	}
}

// jsonArray writes a JSON array an item at a time, exactly as printJSON
// writes a whole slice (indented by two spaces).
type jsonArray struct {
	w io.Writer
	n int
}

func (a *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if a.n == 0 {
		sep = "[\n  "
	}
	a.n++
	_, err = fmt.Fprintf(a.w, "%s%s", sep, b)
	return err
}

func (a *jsonArray) end() error {
	end := "\n]\n"
	if a.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(a.w, end)
	return err
}

// moreText says how to see what a listing cut short left out: "next
// page: relayq queue list --after ID", with the options used.
func moreText(command string, next string) string {
	return fmt.Sprintf("next page: %s --after %s (with the same options)", command, next)
}
