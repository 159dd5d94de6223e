package delivery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"relayq/queue"
)

// TestNoticesPerHourCap (catalogue B6): with max_per_hour 3, five messages
// from one sender that die in the same hour give that sender three
// notices; the other two are recorded as withheld, so neither the sweep
// nor a restart sends them. Another sender still gets its notice, and
// once the hour is over the first sender gets notices again.
func TestNoticesPerHourCap(t *testing.T) {
	clock := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := newNoticeRig(t, NoticeOptions{MaxPerHour: 3, Now: func() time.Time { return clock }})
	since, err := r.q.EnableNotices(true)
	if err != nil {
		t.Fatal(err)
	}
	fail := func(from string, n int) []string {
		var ids []string
		for i := range n {
			rcpt := fmt.Sprintf("gone%d@example.net", i)
			ids = append(ids, r.attempt(t, queue.Envelope{From: from, Recipients: []string{rcpt}},
				queue.Outcome{Address: rcpt, Result: queue.Failed, Reply: reply550}))
		}
		return ids
	}
	to := func(addr string) int {
		n := 0
		for _, m := range r.notices(t) {
			if m.Recipients[0].Address == addr {
				n++
			}
		}
		return n
	}

	ids := fail("cron@example.org", 5)
	if got := to("cron@example.org"); got != 3 {
		t.Fatalf("%d notices to the sender of 5 failed messages, want 3", got)
	}
	for _, id := range ids[3:] {
		if rec, err := r.q.Notices(id); err != nil || rec.Failed != queue.NoticeWithheld {
			t.Errorf("notice record of %s: %+v, %v; want withheld", id, rec, err)
		}
	}
	r.n.sweep(context.Background(), since)
	if got := to("cron@example.org"); got != 3 {
		t.Errorf("%d notices after a sweep, want still 3", got)
	}
	// A restart: a new Notifier, its windows empty; the sweep still sends
	// nothing about the withheld ones.
	restarted := NewNotifier(r.n.opts)
	restarted.sweep(context.Background(), since)
	if got := to("cron@example.org"); got != 3 {
		t.Errorf("%d notices after a restart's sweep, want still 3", got)
	}

	fail("Other@Example.org", 1)
	if got := to("Other@Example.org"); got != 1 {
		t.Errorf("%d notices to another sender, want 1", got)
	}
	clock = clock.Add(time.Hour)
	fail("CRON@example.org", 1) // the same address, whatever its case
	if got := to("CRON@example.org"); got != 1 {
		t.Errorf("%d notices an hour later, want 1", got)
	}
}

// TestNoticeLimitForgetsEndedWindows: the windows of addresses that got
// a notice long ago are dropped once there are many, so a stream of
// senders does not grow the daemon's memory.
func TestNoticeLimitForgetsEndedWindows(t *testing.T) {
	l := newNoticeLimit(1)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range 3 * noticeWindowsPruneAt {
		if ok, _, _ := l.take(fmt.Sprintf("s%d@example.org", i), now); !ok {
			t.Fatal("a first notice to a new address was withheld")
		}
		now = now.Add(2 * time.Second)
	}
	if len(l.to) > noticeWindowsPruneAt+int(noticeWindowLen/(2*time.Second)) {
		t.Errorf("%d windows kept", len(l.to))
	}
	if ok, first, n := l.take("s0@example.org", now); !ok || first || n != 0 {
		t.Errorf("an address whose window ended: %v %v %d", ok, first, n)
	}
}
