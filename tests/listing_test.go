package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestListingsPage: SMTP on the unix socket → relayq with no relay that
// answers, so 12 messages stay queued. `queue list --limit 5` prints five
// and says how many there are and how to see the next page; --after
// gives the next five, then the last two with the usual footer; --json
// lists all twelve, once each, in order; --rcpt takes a substring or a
// glob; mailq --limit 5 gives the whole queue's footer and the next page;
// a bad --after is refused with exit 64.
func TestListingsPage(t *testing.T) {
	d := startDaemon(t, nil)
	var ids []string
	for i := range 12 {
		from, to := "pages@example.org", []string{fmt.Sprintf("rcpt%02d@example.net", i)}
		ids = append(ids, d.submit(t, from, to, newMessage(i, from, to, 3)))
	}
	all := d.queueList(t)
	if len(all) != 12 {
		t.Fatalf("queue list --json: %d messages, want 12", len(all))
	}
	for i, l := range all {
		if l.ID != ids[i] {
			t.Fatalf("queue list --json: %d is %s, want %s (in the order of arrival)", i, l.ID, ids[i])
		}
	}

	first := d.mustRelayq(t, "queue", "list", "--limit", "5")
	wantMore := "5 of 12 message(s) shown; next page: relayq queue list --after " + ids[4]
	if strings.Count(first.stdout, "pages@example.org") != 5 || !strings.Contains(first.stdout, wantMore) {
		t.Errorf("queue list --limit 5:\n%s\nwant 5 messages and %q", first.stdout, wantMore)
	}
	second := d.mustRelayq(t, "queue", "list", "--limit", "5", "--after", ids[4])
	if !strings.Contains(second.stdout, ids[5]) || strings.Contains(second.stdout, ids[4]) ||
		!strings.Contains(second.stdout, "next page: relayq queue list --after "+ids[9]) {
		t.Errorf("the second page:\n%s", second.stdout)
	}
	last := d.mustRelayq(t, "queue", "list", "--limit", "5", "--after", ids[9])
	if strings.Count(last.stdout, "pages@example.org") != 2 || !strings.HasSuffix(last.stdout, "\n2 message(s)\n") {
		t.Errorf("the last page:\n%s\nwant 2 messages and the usual footer", last.stdout)
	}

	for pattern, want := range map[string]int{"rcpt03": 1, "RCPT1*@example.net": 2, "*@example.net": 12, "nobody": 0} {
		res := d.mustRelayq(t, "queue", "list", "--json", "--rcpt", pattern)
		var got []listed
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || len(got) != want {
			t.Errorf("queue list --rcpt %s: %d messages (%v); want %d", pattern, len(got), err, want)
		}
	}
	if res := d.relayq("queue", "list", "--json", "--older-than", "1h"); res.code != 0 || strings.TrimSpace(res.stdout) != "[]" {
		t.Errorf("queue list --older-than 1h: %v; want an empty array", res)
	}

	mq := d.mustRelayq(t, "mailq", "--limit", "5")
	if strings.Count(mq.stdout, "pages@example.org") != 5 || !strings.Contains(mq.stdout, " in 12 Requests.\n") ||
		!strings.Contains(mq.stdout, "-- 5 shown; next page: mailq --after "+ids[4]) {
		t.Errorf("mailq --limit 5:\n%s", mq.stdout)
	}
	var st struct {
		Messages int   `json:"messages"`
		Pending  int   `json:"recipients_pending"`
		Bytes    int64 `json:"bytes_queued"`
	}
	res := d.mustRelayq(t, "status", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Messages != 12 || st.Pending != 12 || st.Bytes < 12*100 {
		t.Errorf("status --json: %+v (%v); want 12 messages, 12 recipients pending and their bytes", st, err)
	}
	if res := d.relayq("queue", "list", "--after", "nonsense"); res.code != 64 {
		t.Errorf("queue list --after nonsense: %v; want exit 64", res)
	}
}

// TestCountersExactAfterKill9: SMTP on the unix socket → relayq →
// smtptest relay that defers every recipient (451) but one address,
// which it refuses (550), so messages are deferred again and again and
// some die while relayq is killed with SIGKILL twice. After each restart
// `relayq status` counts exactly what the listings hold, and `relayq
// queue check` (daemon stopped) finds the counters equal to the records.
func TestCountersExactAfterKill9(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{
			"*":                smtptest.Times(100000, smtptest.Reply(451, "4.3.0 later")),
			"gone@example.net": smtptest.Times(100000, smtptest.Reply(550, "5.1.1 no such user")),
		},
	}})
	d := startDaemon(t, relay)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 15 {
				from, to := "kill@example.org", []string{fmt.Sprintf("r%d-%d@example.net", w, i)}
				if i%5 == 0 {
					to = append(to, "gone@example.net")
				}
				_, _ = submitSMTP("unix", d.submitSocket(), from, to, newMessage(i, from, to, 3))
			}
		})
		if w%2 == 1 {
			time.Sleep(150 * time.Millisecond)
			d.kill()
			d.start()
		}
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // a few more deferrals and deaths
	d.kill()
	d.start()
	// Once every refused recipient has died, the counts hold still
	// (the others are only deferred again), and status and the
	// listings can be compared.
	waitFor(t, 30*time.Second, "every refused recipient to die", func() bool {
		for _, l := range d.queueList(t) {
			for _, r := range l.Recipients {
				if r.Address == "gone@example.net" && r.Status != "dead" {
					return false
				}
			}
		}
		return true
	})
	var st struct {
		Messages int `json:"messages"`
		Dead     int `json:"dead"`
		Pending  int `json:"recipients_pending"`
	}
	res := d.relayq("status", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status --json: %v (%v)", res, err)
	}
	list, dead := d.queueList(t), d.deadList(t)
	pending := 0
	for _, l := range list {
		for _, r := range l.Recipients {
			if r.Status != "delivered" && r.Status != "dead" {
				pending++
			}
		}
	}
	if st.Messages != len(list) || st.Dead != len(dead) || st.Pending != pending || st.Messages == 0 || st.Dead == 0 {
		t.Errorf("status after kill -9: %+v; the listings hold %d messages with %d recipients pending and %d dead letters",
			st, len(list), pending, len(dead))
	}
	d.stop()
	if res := d.relayq("queue", "check"); res.code != 0 || !strings.HasSuffix(res.stdout, ": ok\n") {
		t.Errorf("queue check after kill -9: %v", res)
	}
}
