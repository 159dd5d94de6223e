package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// End-to-end tests of who submitted a message (uid, user name, systemd
// unit) and of the per-submitter [limits].

// TestLimitPerUID: SMTP on the unix socket and `relayq sendmail`, both as
// the test's uid → relayq with a [[limits.rule]] of 2 messages an hour for
// that uid (relay down, so everything stays queued). The first two are
// taken; the third SMTP MAIL FROM gets 452 4.7.0, and sendmail exits 75
// (EX_TEMPFAIL) with the reply and leaves nothing in the maildrop. Another
// uid (nobody, when the suite runs as root) is not held back.
func TestLimitPerUID(t *testing.T) {
	uid := os.Getuid()
	d := startDaemon(t, nil, func(s settings) {
		s.set("limits", "rule", "[{uid = "+strconv.Itoa(uid)+", messages_per_hour = 2}]")
	})
	from, to := "cron@example.org", []string{"rcpt@example.net"}
	d.submit(t, from, to, newMessage(1, from, to, 3))
	d.submit(t, from, to, newMessage(2, from, to, 3))
	_, err := submitSMTP("unix", d.submitSocket(), from, to, newMessage(3, from, to, 3))
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) || reply.Code != 452 || reply.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) ||
		reply.Message != "Too many messages from uid "+strconv.Itoa(uid)+": limit 2 an hour, try again later" {
		t.Errorf("third submission: %v, want 452 4.7.0 naming the limit", err)
	}
	res := d.sendmail(newMessage(4, from, to, 3), "rcpt@example.net")
	if res.code != 75 || !strings.Contains(res.stderr, "452 4.7.0") {
		t.Errorf("sendmail over the limit: %v, want exit 75 with the 452 4.7.0 reply", res)
	}
	entries, err := os.ReadDir(d.maildrop())
	if err != nil || len(entries) != 0 {
		t.Errorf("maildrop after a refusal: %v (%v), want empty: a limit is no reason to fall back", entries, err)
	}
	if n := len(d.queueList(t)); n != 2 {
		t.Errorf("%d messages queued, want 2", n)
	}
	if refused := d.logRecords("submission refused: messages_per_hour"); len(refused) != 2 || refused[0]["limit_key"] != "uid "+strconv.Itoa(uid) {
		t.Errorf("refusals logged: %v, want 2 naming uid %d", refused, uid)
	}
	// relayq status shows the uid at its limit, and the refusals.
	var st struct {
		Limits []struct {
			Submitter        string `json:"submitter"`
			MessagesLastHour *int   `json:"messages_last_hour"`
			MessagesPerHour  int    `json:"messages_per_hour"`
			QueuedBytes      *int64 `json:"queued_bytes"`
			Refused          int    `json:"refused"`
			LastRefused      string `json:"last_refused"`
		} `json:"limits"`
	}
	res = d.mustRelayq(t, "status", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || len(st.Limits) != 1 {
		t.Fatalf("status --json: %v (%v), want one submitter under limits", res, err)
	}
	if l := st.Limits[0]; l.Submitter != "uid "+strconv.Itoa(uid) || l.MessagesLastHour == nil || *l.MessagesLastHour != 2 ||
		l.MessagesPerHour != 2 || l.QueuedBytes != nil || l.Refused != 2 || l.LastRefused == "" {
		t.Errorf("status --json limits: %+v, want uid %d at 2 of 2 messages, 2 refused, no byte count", l, uid)
	}
	if text := d.mustRelayq(t, "status").stdout; !strings.Contains(text, fmt.Sprintf("Limit:        uid %d: 2 of 2 message(s) in the last hour, 2 refused since start (the last at ", uid)) {
		t.Errorf("status: no line for the uid's limit:\n%s", text)
	}
	if os.Geteuid() == 0 {
		bin := publicBin(t)
		openStateDir(t, d)
		r := asUser(bin, nobody, nobody, nil, newMessage(5, from, to, 3), "sendmail", "-c", d.config, "rcpt@example.net")
		if r.code != 0 {
			t.Errorf("sendmail as nobody, who has no limit: %v", r)
		}
	}
}

// TestSubmitterIdentity: `relayq sendmail` run as nobody → relayq (relay
// down). `queue list --json` has the submitter's uid and user name as the
// user database had it at intake, the table names the user, and `queue
// show` says "uid 65534 (nobody)".
func TestSubmitterIdentity(t *testing.T) {
	needRoot(t)
	u, err := user.LookupId(strconv.Itoa(nobody))
	if err != nil {
		t.Skipf("uid %d is not in the user database: %v", nobody, err)
	}
	bin := publicBin(t)
	d := startDaemon(t, nil)
	openStateDir(t, d)
	msg := newMessage(1, "nobody@example.org", []string{"rcpt@example.net"}, 3)
	if r := asUser(bin, nobody, nobody, nil, msg, "sendmail", "-c", d.config, "-v", "rcpt@example.net"); r.code != 0 {
		t.Fatalf("sendmail as nobody: %v", r)
	}
	res := d.mustRelayq(t, "queue", "list", "--json")
	var items []struct {
		ID        string `json:"id"`
		Submitter struct {
			UID  int    `json:"uid"`
			User string `json:"user"`
			Unit string `json:"unit"`
			Via  string `json:"via"`
		} `json:"submitter"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &items); err != nil || len(items) != 1 {
		t.Fatalf("queue list --json: %v (%v)", res, err)
	}
	sub := items[0].Submitter
	if sub.UID != nobody || sub.User != u.Username || sub.Via != "socket" {
		t.Errorf("submitter %+v, want uid %d user %q via socket", sub, nobody, u.Username)
	}
	if table := d.mustRelayq(t, "queue", "list"); !strings.Contains(table.stdout, "SUBMITTER") || !strings.Contains(table.stdout, u.Username) {
		t.Errorf("queue list table lacks the submitter:\n%s", table.stdout)
	}
	show := d.mustRelayq(t, "queue", "show", items[0].ID)
	if want := "uid " + strconv.Itoa(nobody) + " (" + u.Username + ")"; !strings.Contains(show.stdout, want) {
		t.Errorf("queue show lacks %q:\n%s", want, show.stdout)
	}
}
