package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"relayq/control"
	"relayq/queue"
)

// TestJSONArrayStreamsAsPrintJSON: a listing written a page at a time is
// byte for byte what printJSON wrote for the whole slice, empty included.
func TestJSONArrayStreamsAsPrintJSON(t *testing.T) {
	for n := range 4 {
		var items []listItem
		for i := range n {
			items = append(items, listItem{ID: fmt.Sprintf("ID%d", i), Recipients: []rcptItem{{Address: "a@x.org", Status: "queued"}}})
		}
		var whole, streamed bytes.Buffer
		all := items
		if all == nil {
			all = []listItem{}
		}
		printJSON(cmdEnv{Stdout: &whole}, all)
		arr := &jsonArray{w: &streamed}
		for _, it := range items {
			if err := arr.add(it); err != nil {
				t.Fatal(err)
			}
		}
		if err := arr.end(); err != nil {
			t.Fatal(err)
		}
		if whole.String() != streamed.String() {
			t.Errorf("%d items: streamed\n%s\nwant\n%s", n, streamed.String(), whole.String())
		}
	}
}

// TestPagesStopAtTheLimit: pages asks for pages of at most
// control.MaxPage, from where the last one ended, until the limit or the
// end, and reports where the next page starts.
func TestPagesStopAtTheLimit(t *testing.T) {
	const total = 2500
	call := func(req control.Request) (*control.Response, int) {
		start := 0
		if req.After != "" {
			fmt.Sscanf(req.After, "m%d", &start)
			start++
		}
		var resp control.Response
		for i := start; i < total && len(resp.Messages) < req.Limit; i++ {
			resp.Messages = append(resp.Messages, &queue.Message{ID: fmt.Sprintf("m%d", i), Created: time.Now()})
		}
		if last := start + len(resp.Messages) - 1; last < total-1 {
			resp.Next = fmt.Sprintf("m%d", last)
		}
		resp.Total = total
		return &resp, exitOK
	}
	for _, tt := range []struct {
		limit, shown, calls int
		next                string
	}{{0, 2500, 3, ""}, {1000, 1000, 1, "m999"}, {1500, 1500, 2, "m1499"}, {2500, 2500, 3, ""}, {5, 5, 1, "m4"}} {
		calls := 0
		var seen []string
		l, code := pages(control.Request{Op: control.OpQueueList}, tt.limit, call, func(resp *control.Response) error {
			calls++
			for _, m := range resp.Messages {
				seen = append(seen, m.ID)
			}
			return nil
		})
		if code != exitOK || l.shown != tt.shown || len(seen) != tt.shown || l.next != tt.next || calls != tt.calls ||
			seen[len(seen)-1] != fmt.Sprintf("m%d", tt.shown-1) {
			t.Errorf("limit %d: shown %d (%d seen) in %d calls, next %q; want %d in %d, next %q", tt.limit, l.shown, len(seen), calls, l.next, tt.shown, tt.calls, tt.next)
		}
	}
}

// TestMailqCutFooter: a mailq listing cut short keeps Postfix's footer
// with the whole queue's figures and says how to see the next page.
func TestMailqCutFooter(t *testing.T) {
	var b bytes.Buffer
	w := &mailqWriter{w: &b, loc: time.UTC}
	w.add(&queue.Message{ID: "1HVQCK85P60GJD748E53", Size: 2048, From: "a@x.org", Recipients: []queue.Recipient{{Address: "r@x.org", Status: queue.StatusQueued}}})
	w.cut(1040000, 2080000<<10, "1HVQCK85P60GJD748E53")
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	want := "\n-- 2080000 Kbytes in 1040000 Requests.\n-- 1 shown; next page: mailq --after 1HVQCK85P60GJD748E53 (with the same options)\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("mailq cut short:\n%s\nwant it to end with\n%s", b.String(), want)
	}
}
