package queue

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// pageAll walks a listing page by page and returns the IDs in order and
// how many pages it took.
func pageAll(t *testing.T, q *Queue, o PageOptions, keep func(*Message) bool) ([]string, int) {
	t.Helper()
	var ids []string
	for n := 1; ; n++ {
		p, err := q.MessagePage(o, keep)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) > o.Limit {
			t.Fatalf("page of %d items, limit %d", len(p.Items), o.Limit)
		}
		for _, m := range p.Items {
			ids = append(ids, m.ID)
		}
		if p.Next == "" {
			return ids, n
		}
		if n > 1000 {
			t.Fatal("the listing never ends")
		}
		o.After = p.Next
	}
}

// TestPagesCoverTheQueueOnce: paging through the queue with After gives
// every message once, oldest first; a filter that matches little is read
// at most MaxScan records per page, and still gives every match; an age
// ends the walk at the first message too young.
func TestPagesCoverTheQueueOnce(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	var all []string
	for i := range 25 {
		all = append(all, put(t, q, "x\r\n", fmt.Sprintf("r%d@x.org", i)))
		clk.Advance(time.Minute)
	}
	ids, n := pageAll(t, q, PageOptions{Limit: 10}, nil)
	if !slices.Equal(ids, all) || n != 3 {
		t.Errorf("paged %v in %d pages; want %v in 3", ids, n, all)
	}
	fifth := func(m *Message) bool { return slices.Index(all, m.ID)%5 == 0 }
	ids, n = pageAll(t, q, PageOptions{Limit: 10, MaxScan: 4}, fifth)
	if want := []string{all[0], all[5], all[10], all[15], all[20]}; !slices.Equal(ids, want) || n != 7 {
		t.Errorf("filtered: %v in %d pages; want %v in 7 (4 records read a page)", ids, n, want)
	}
	// Created 25, 24 … 1 minutes before now: older than 20 minutes are
	// the first five (25 to 21 minutes old).
	ids, _ = pageAll(t, q, PageOptions{Limit: 2, CreatedBefore: clk.Now().Add(-20 * time.Minute)}, nil)
	if !slices.Equal(ids, all[:5]) {
		t.Errorf("older than 20m: %v; want %v", ids, all[:5])
	}
	if _, err := q.MessagePage(PageOptions{}, nil); err == nil {
		t.Error("a page without a limit: no error")
	}
}
