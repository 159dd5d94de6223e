package tests

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// End-to-end tests of the operator commands (queue retry/hold/release/
// delete, dead requeue, status): each runs the real binary as a client of a
// running `relayq serve`, over its control socket.

// relayq runs `relayq ARGS… -c CONFIG` against d.
func (d *daemon) relayq(args ...string) cmdResult {
	return runCmd(relayqBin, nil, append(args, "-c", d.config)...)
}

// mustRelayq is relayq that fails the test unless the command exits 0.
// Exit 75 (a message was being delivered right then: with the relay down,
// attempts come every second) is tried again, as an operator would.
func (d *daemon) mustRelayq(t testing.TB, args ...string) cmdResult {
	t.Helper()
	var res cmdResult
	waitFor(t, 15*time.Second, "relayq "+strings.Join(args, " ")+" to find no message busy", func() bool {
		res = d.relayq(args...)
		return res.code != 75
	})
	if res.code != 0 {
		t.Fatalf("relayq %s: %v", strings.Join(args, " "), res)
	}
	return res
}

// waitListed waits until `queue list` shows message id in state.
func waitListed(t *testing.T, d *daemon, id, state string) listed {
	t.Helper()
	var found listed
	waitFor(t, 15*time.Second, "message "+id+" "+state, func() bool {
		res := d.relayq("queue", "list", "--json")
		var items []struct {
			listed
			State string `json:"state"`
		}
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &items) != nil {
			return false
		}
		for _, it := range items {
			if it.ID == id && it.State == state {
				found = it.listed
				return true
			}
		}
		return false
	})
	return found
}

// waitDead waits until `dead list` has id.
func waitDead(t *testing.T, d *daemon, id string) listed {
	t.Helper()
	var dl listed
	waitFor(t, 15*time.Second, "dead letter "+id, func() bool {
		var ok bool
		dl, ok = findDead(d.deadList(t), id)
		return ok
	})
	return dl
}

// delivered returns the messages the relay accepted whose body is body.
func delivered(relay *smtptest.Server, body []byte) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range relay.Messages() {
		if sameMessage(m.Body, body) {
			out = append(out, m)
		}
	}
	return out
}

// TestHoldSurvivesRestart: SMTP on the unix socket → relayq (relay down) →
// `queue hold`; restart with the smtptest relay up. A message submitted
// after the restart goes through, the held one does not; `queue release`
// lets it go.
func TestHoldSurvivesRestart(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	// One worker takes due messages one at a time, earliest first.
	d := startDaemon(t, nil, func(s settings) { s.set("delivery", "workers", "1") })
	from, to := "hold@example.org", []string{"rcpt@example.net"}
	heldBody := newMessage(1, from, to, 5)
	id := d.submit(t, from, to, heldBody)
	waitListed(t, d, id, "deferred")
	d.mustRelayq(t, "queue", "hold", id)
	waitListed(t, d, id, "held")

	d.settings.set("relay", "url", tomlString(relayURL(relay, false)))
	d.writeConfig()
	d.restart()
	l := waitListed(t, d, id, "held")
	waitFor(t, 10*time.Second, "the held message's next attempt time to pass", func() bool { return time.Now().After(*l.NextAttempt) })
	// Fence: a message sent now is delivered. Were the held one in the
	// schedule, the one worker would have taken it first, being due
	// earlier, so it would be at the relay by then.
	fence := newMessage(2, from, to, 5)
	d.submit(t, from, to, fence)
	relay.WaitMessages(t, 1, 20*time.Second)
	if got := delivered(relay, heldBody); len(got) != 0 {
		t.Fatalf("the held message was delivered before its release")
	}
	if res := d.relayq("queue", "retry", id); res.code != 75 || !strings.Contains(res.stderr, "on hold") {
		t.Errorf("queue retry of a held message: %v, want exit 75 saying it is on hold", res)
	}

	d.mustRelayq(t, "queue", "release", id)
	waitFor(t, 20*time.Second, "the released message at the relay", func() bool { return len(delivered(relay, heldBody)) == 1 })
	d.waitQueueEmpty(t, 10*time.Second)
}

// TestDeadRequeueDelivers: SMTP on the unix socket → relayq → smtptest
// relay that refuses the recipient with 550 once. The message is dead;
// `dead requeue ID` puts it back with its attempts reset and it is
// delivered, once.
func TestDeadRequeueDelivers(t *testing.T) {
	rcpt := "later@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{rcpt: {smtptest.Reply(550, "5.1.1 <later@example.net>: no such user (yet)")}},
	}})
	d := startDaemon(t, relay)
	from := "requeue@example.org"
	body := newMessage(3, from, []string{rcpt}, 5)
	id := d.submit(t, from, []string{rcpt}, body)
	dl := waitDead(t, d, id)
	if dl.Recipients[0].ReplyCode != 550 || dl.Attempts != 1 {
		t.Fatalf("dead letter %+v, want one attempt answered 550", dl)
	}
	res := d.mustRelayq(t, "dead", "requeue", id)
	if !strings.Contains(res.stdout, id+": requeued") {
		t.Errorf("dead requeue printed %q", res.stdout)
	}
	waitFor(t, 20*time.Second, "the requeued message at the relay", func() bool { return len(delivered(relay, body)) == 1 })
	d.waitQueueEmpty(t, 10*time.Second)
	if _, ok := findDead(d.deadList(t), id); ok {
		t.Error("the delivered message is still in the dead letters")
	}
	if n := countRcpt(relay, rcpt); n != 2 {
		t.Errorf("relay was asked %d times for %s, want twice (550, then 250)", n, rcpt)
	}
	// The attempt after the requeue is attempt 1 again, not 2.
	waitFor(t, 5*time.Second, "two delivery log lines", func() bool { return len(d.deliveryLog(id)) >= 2 })
	if l := d.deliveryLog(id)[1]; l["status"] != "sent" || l["attempt"] != "1" {
		t.Errorf("log after requeue: status=%s attempt=%s, want sent at attempt 1", l["status"], l["attempt"])
	}
}

// TestDeadRequeueByReplyClass: two messages die, one on 550 5.7.1 (the
// relay refused us: say, credentials), one on 550 5.1.1 (no such user).
// `dead requeue --reply-class 5.7.x` brings back only the first, which is
// delivered; the other stays dead.
func TestDeadRequeueByReplyClass(t *testing.T) {
	auth, gone := "auth@example.net", "gone@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{
			auth: {smtptest.Reply(550, "5.7.1 relaying denied")},
			gone: smtptest.Times(10, smtptest.Reply(550, "5.1.1 no such user")),
		},
	}})
	d := startDaemon(t, relay)
	from := "class@example.org"
	authBody := newMessage(4, from, []string{auth}, 5)
	authID := d.submit(t, from, []string{auth}, authBody)
	goneID := d.submit(t, from, []string{gone}, newMessage(5, from, []string{gone}, 5))
	waitDead(t, d, authID)
	waitDead(t, d, goneID)

	res := d.mustRelayq(t, "dead", "requeue", "--reply-class", "5.7.x", "--json")
	var out struct {
		Results []struct {
			ID    string `json:"id"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil || len(out.Results) != 1 || out.Results[0].ID != authID || out.Results[0].Error != "" {
		t.Fatalf("dead requeue --reply-class 5.7.x --json: %v (%v), want only %s requeued", res, err, authID)
	}
	waitFor(t, 20*time.Second, "the 5.7.1 message at the relay", func() bool { return len(delivered(relay, authBody)) == 1 })
	d.waitQueueEmpty(t, 10*time.Second)
	dead := d.deadList(t)
	if len(dead) != 1 || dead[0].ID != goneID {
		t.Errorf("dead letters %+v, want only %s", dead, goneID)
	}
	if n := countRcpt(relay, gone); n != 1 {
		t.Errorf("relay was asked %d times for %s, want once", n, gone)
	}
}

// TestQueueRetryGoesOutNow: SMTP on the unix socket → relayq → smtptest
// relay that answers DATA with 451 once; the next attempt is an hour away.
// `queue retry ID` makes it go out at once, and `queue show` has the
// history of both attempts meanwhile.
func TestQueueRetryGoesOutNow(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Data: []smtptest.Step{smtptest.Reply(451, "4.3.0 Try again later")},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("retry", "initial_interval", `"1h"`)
		s.set("retry", "max_interval", `"2h"`)
	})
	from, to := "retry-now@example.org", []string{"rcpt@example.net"}
	body := newMessage(6, from, to, 5)
	id := d.submit(t, from, to, body)
	l := waitListed(t, d, id, "deferred")
	if l.NextAttempt == nil || time.Until(*l.NextAttempt) < 30*time.Minute {
		t.Fatalf("next attempt %v, want about an hour away", l.NextAttempt)
	}
	show := d.mustRelayq(t, "queue", "show", id)
	if !strings.Contains(show.stdout, "451 4.3.0 Try again later") || !strings.Contains(show.stdout, "1 attempt(s)") {
		t.Errorf("queue show lacks the attempt history:\n%s", show.stdout)
	}
	d.mustRelayq(t, "queue", "retry", id)
	got := relay.WaitMessages(t, 1, 10*time.Second)
	if !sameMessage(got[0].Body, body) {
		t.Errorf("body differs")
	}
	d.waitQueueEmpty(t, 10*time.Second)
}

// TestQueueDelete: a message that cannot be delivered (relay down) is
// deleted with `queue delete`: gone from the list, unknown to `queue
// show` (exit 66), and the deletion is logged with the operator's uid.
func TestQueueDelete(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "delete@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(7, from, to, 5))
	keep := d.submit(t, from, to, newMessage(8, from, to, 5))
	waitListed(t, d, id, "deferred")
	res := d.mustRelayq(t, "queue", "delete", id)
	if !strings.Contains(res.stdout, id+": deleted") {
		t.Errorf("queue delete printed %q", res.stdout)
	}
	var ids []string
	for _, l := range d.queueList(t) {
		ids = append(ids, l.ID)
	}
	if !slices.Equal(ids, []string{keep}) {
		t.Errorf("queue after delete: %v, want only %s", ids, keep)
	}
	if res := d.relayq("queue", "show", id); res.code != 66 {
		t.Errorf("queue show of a deleted message: %v, want exit 66", res)
	}
	if res := d.relayq("queue", "delete", id); res.code != 66 || !strings.Contains(res.stderr, "no such message") {
		t.Errorf("second delete: %v, want exit 66", res)
	}
	var logged bool
	for _, rec := range d.logRecords("control: queue changed by operator") {
		if rec["op"] == "queue delete" && strings.Contains(rec["ids"], id) && rec["uid"] != "" {
			logged = true
		}
	}
	if !logged {
		t.Error("the deletion was not logged with the operator's uid")
	}
}

// TestStatusMaxQueueAge: `relayq status` is a monitoring check. With the
// relay down and [health] max_queue_age = "1s", it exits 0 on an empty
// queue, 1 once a deferred message is older than that, and 0 again once
// that message is held (an operator's decision, not a stuck queue).
func TestStatusMaxQueueAge(t *testing.T) {
	d := startDaemon(t, nil, func(s settings) { s.set("health", "max_queue_age", `"1s"`) })
	if res := d.relayq("status"); res.code != 0 || !strings.Contains(res.stdout, "Health:       ok") {
		t.Fatalf("status on an empty queue: %v", res)
	}
	from, to := "status@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(9, from, to, 5))
	var res cmdResult
	waitFor(t, 20*time.Second, "status to exit 1", func() bool {
		res = d.relayq("status", "--json")
		return res.code == 1
	})
	var st struct {
		Healthy  bool     `json:"healthy"`
		Problems []string `json:"problems"`
		Deferred int      `json:"deferred"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "max_queue_age") {
		t.Fatalf("status --json: %v (%v)", res, err)
	}
	d.mustRelayq(t, "queue", "hold", id)
	if res := d.relayq("status"); res.code != 0 {
		t.Errorf("status with the only message held: %v, want exit 0", res)
	}
	d.stop()
	if res := d.relayq("status"); res.code != 69 {
		t.Errorf("status with the daemon stopped: %v, want exit 69", res)
	}
}
