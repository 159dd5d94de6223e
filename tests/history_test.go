package tests

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// End-to-end tests of what relayq remembers and how it is looked after:
// `queue status` after delivery, the uncertain state, the mailq listing,
// and the offline maintenance commands (compact, queue check).

// messageStatus is `relayq queue status ID --json`.
type messageStatus struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Left       *time.Time `json:"left"`
	Recipients []struct {
		Address string `json:"address"`
		Status  string `json:"status"`
		Relay   string `json:"relay"`
		Reply   *reply `json:"reply"`
		RelayID string `json:"relay_id"`
	} `json:"recipients"`
}

func (d *daemon) messageStatus(t *testing.T, id string) messageStatus {
	t.Helper()
	res := d.relayq("queue", "status", id, "--json")
	var st messageStatus
	if res.code != 0 || json.Unmarshal([]byte(res.stdout), &st) != nil {
		t.Fatalf("queue status %s --json: %v", id, res)
	}
	return st
}

// TestQueueStatusAfterDelivery: `relayq sendmail -v` (which prints the
// queue ID) → relayq → smtptest relay ("250 2.0.0 Ok: queued as C1M1").
// Once the message has left the queue, `queue status ID` still says it
// was delivered, by which relay, with the relay's reply and its own queue
// ID; an unknown ID exits 66.
func TestQueueStatusAfterDelivery(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	from, to := "status@example.org", []string{"rcpt@example.net"}
	res := d.sendmail(newMessage(1, from, to, 5), "-v", "-f", from, to[0])
	m := queuedAs.FindStringSubmatch(res.stdout)
	if res.code != 0 || m == nil {
		t.Fatalf("sendmail -v: %v, want the queue ID printed", res)
	}
	id := m[1]
	got := relay.WaitMessages(t, 1, 20*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)

	st := d.messageStatus(t, id)
	r := st.Recipients
	if st.ID != id || st.State != "delivered" || st.Left == nil || len(r) != 1 || r[0].Status != "delivered" ||
		r[0].RelayID != got[0].ID || r[0].Relay != relayURL(relay, false) || !strings.Contains(r[0].Reply.String(), "queued as "+got[0].ID) {
		t.Fatalf("queue status after delivery: %+v; relay's ID %s", st, got[0].ID)
	}
	text := d.mustRelayq(t, "queue", "status", id)
	for _, want := range []string{"delivered (left the queue", got[0].ID, "250 2.0.0 Ok: queued as"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("queue status lacks %q:\n%s", want, text.stdout)
		}
	}
	if res := d.relayq("queue", "status", "01JDGZ4M7Q0000ABCDEF"); res.code != 66 {
		t.Errorf("queue status of an unknown ID: %v, want exit 66", res)
	}
	if res := d.relayq("queue", "status", "not-an-id"); res.code != 64 {
		t.Errorf("queue status of a malformed ID: %v, want exit 64", res)
	}
}

// TestUncertainAfterTheDot: SMTP on the unix socket → relayq → smtptest
// relay that closes the connection after the final dot, before its reply,
// once. With uncertain = "retry" the message is listed uncertain (also by
// --state uncertain), logged as a possible duplicate, and delivered on the
// retry; with uncertain = "hold" it is held until released.
func TestUncertainAfterTheDot(t *testing.T) {
	for _, policy := range []string{"retry", "hold"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
				Body: []smtptest.Step{{Fault: smtptest.Drop}},
			}})
			d := startDaemon(t, relay, faultSettings, func(s settings) {
				// The retry waits for the test, which then asks for it.
				s.set("retry", "initial_interval", `"1h"`)
				s.set("retry", "max_interval", `"2h"`)
				s.set("delivery", "uncertain", tomlString(policy))
			})
			from, to := "uncertain@example.org", []string{"rcpt@example.net"}
			body := newMessage(1, from, to, 5)
			id := d.submit(t, from, to, body)

			state := map[string]string{"retry": "uncertain", "hold": "held"}[policy]
			l := waitListed(t, d, id, state)
			if l.Recipients[0].Status != "uncertain" {
				t.Errorf("recipient %+v, want status uncertain", l.Recipients[0])
			}
			if policy == "retry" {
				if res := d.relayq("queue", "list", "--state", "uncertain"); res.code != 0 || !strings.Contains(res.stdout, id) {
					t.Errorf("queue list --state uncertain: %v, want %s listed", res, id)
				}
				if res := d.relayq("queue", "list", "--state", "deferred"); res.code != 0 || strings.Contains(res.stdout, id) {
					t.Errorf("queue list --state deferred: %v, want %s not listed", res, id)
				}
				// The worker logs the attempt once its record has
				// committed, a moment after the listing shows it.
				waitFor(t, 10*time.Second, "the attempt logged", func() bool { return len(d.deliveryLog(id)) > 0 })
				if lines := d.deliveryLog(id); len(lines) != 1 || lines[0]["possible_duplicate"] != "true" {
					t.Errorf("delivery log %v, want one line with possible_duplicate=true", lines)
				}
				d.mustRelayq(t, "queue", "retry", id)
			} else {
				held := func() int {
					return len(d.logRecords("message held: the connection was lost after the final dot, so the relay may have it; " +
						"check the relay's log, then `relayq queue release` (send again) or `relayq queue delete`"))
				}
				// Logged once the hold has committed, a moment after
				// the listing shows it.
				waitFor(t, 10*time.Second, "the hold logged", func() bool { return held() > 0 })
				if n := held(); n != 1 {
					t.Errorf("the hold was logged %d times, want once", n)
				}
				if st := d.messageStatus(t, id); st.State != "held" || st.Recipients[0].Status != "uncertain" {
					t.Errorf("queue status %+v, want held with the recipient uncertain", st)
				}
				d.mustRelayq(t, "queue", "release", id)
			}
			waitFor(t, 20*time.Second, "the message at the relay", func() bool { return len(delivered(relay, body)) == 1 })
			d.waitQueueEmpty(t, 10*time.Second)
			if st := d.messageStatus(t, id); st.State != "delivered" {
				t.Errorf("queue status after the retry: %+v", st)
			}
		})
	}
}

// TestMailq: SMTP on the unix socket → relayq → smtptest relay that
// answers the DATA of the first transaction with 451. `mailq` (relayq
// invoked as mailq) and `relayq sendmail -bp` list the deferred message in
// Postfix's format, with its reason; a held one has "!". `sendmail -q`
// flushes the queue, after which mailq says it is empty.
func TestMailq(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Data: smtptest.Times(2, smtptest.Reply(451, "4.3.0 Try again later")),
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("delivery", "workers", "1")
		s.set("retry", "initial_interval", `"1h"`)
		s.set("retry", "max_interval", `"2h"`)
	})
	mailq := filepath.Join(t.TempDir(), "mailq")
	if err := os.Symlink(sendmailBin, mailq); err != nil {
		t.Fatal(err)
	}
	from, to := "mailq@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 5)
	id := d.submit(t, from, to, body)
	held := d.submit(t, "", []string{"other@example.net"}, newMessage(2, "", to, 5))
	waitListed(t, d, id, "deferred")
	waitListed(t, d, held, "deferred")
	d.mustRelayq(t, "queue", "hold", held)

	res := runCmd(mailq, nil, "-c", d.config)
	if res.code != 0 {
		t.Fatalf("mailq: %v", res)
	}
	out := res.stdout
	lines := strings.Split(out, "\n")
	reason := "(451 4.3.0 Try again later (in reply to data))"
	for i, want := range []string{
		"----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------",
		id + " ",
		strings.Repeat(" ", 78-len(reason)) + reason,
		strings.Repeat(" ", 47) + "rcpt@example.net",
		"",
		held + "! ",
	} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
			t.Fatalf("mailq line %d: want it to start with %q; output:\n%s", i+1, want, out)
		}
	}
	if !strings.Contains(lines[5], " MAILER-DAEMON") || !regexp.MustCompile(`\n\n-- \d+ Kbytes in 2 Requests\.\n$`).MatchString(out) {
		t.Errorf("mailq output:\n%s", out)
	}
	if bp := d.sendmail(nil, "-bp"); bp.code != 0 || bp.stdout != out {
		t.Errorf("sendmail -bp: %v, want the same listing as mailq", bp)
	}

	firstPage := runCmd(mailq, nil, "-c", d.config, "--limit", "1")
	if firstPage.code != 0 || !strings.Contains(firstPage.stdout, "next page: mailq --after ") {
		t.Fatalf("mailq --limit 1: %v", firstPage)
	}

	// The daemon down: mailq reads the queue file, as Postfix's does, says
	// so, and counts what waits in the maildrop; a page at a time, as the
	// daemon answers (--limit).
	d.stop()
	down := d.sendmail(newMessage(3, from, to, 5), "-oi", "-f", from, to[0])
	if down.code != 0 {
		t.Fatalf("sendmail with the daemon down: %v", down)
	}
	res = runCmd(mailq, nil, "-c", d.config)
	if res.code != 0 || res.stdout != out {
		t.Errorf("mailq with the daemon down: %v\nwant the daemon's listing:\n%s", res, out)
	}
	if !strings.Contains(res.stderr, "relayq is not running") || !strings.Contains(res.stderr, "1 message(s) in the maildrop") {
		t.Errorf("mailq with the daemon down: stderr %q, want it to say so and count the maildrop", res.stderr)
	}
	if res := runCmd(mailq, nil, "-c", d.config, "--limit", "1"); res.code != 0 || res.stdout != firstPage.stdout {
		t.Errorf("mailq --limit 1 with the daemon down: %v\nwant the daemon's first page:\n%s", res, firstPage.stdout)
	}
	d.start()

	if q := d.sendmail(nil, "-q"); q.code != 0 {
		t.Fatalf("sendmail -q: %v", q)
	}
	waitFor(t, 20*time.Second, "the flushed message at the relay", func() bool { return len(delivered(relay, body)) == 1 })
	waitFor(t, 20*time.Second, "the maildrop's message at the relay", func() bool {
		for _, m := range relay.Messages() {
			if seqOf(m.Body) == 3 {
				return true
			}
		}
		return false
	})
	d.mustRelayq(t, "queue", "delete", held)
	waitFor(t, 10*time.Second, "an empty mailq", func() bool {
		res := runCmd(mailq, nil, "-c", d.config)
		return res.code == 0 && res.stdout == "Mail queue is empty\n"
	})
	d.stop()
	if res := runCmd(mailq, nil, "-c", d.config); res.code != 0 || res.stdout != "Mail queue is empty\n" || strings.Contains(res.stderr, "maildrop") {
		t.Errorf("mailq with the daemon stopped and the queue empty: %v", res)
	}
}

// TestCompactAndCheck: `relayq queue check` refuses while the daemon
// holds the queue file (exit 75), and `relayq compact` has the daemon
// compact it while it runs (exit 0); stopped, the check
// passes and compaction keeps every message, which the restarted daemon
// lists and then delivers.
func TestCompactAndCheck(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "compact@example.org", []string{"rcpt@example.net"}
	var ids []string
	for i := range 5 {
		ids = append(ids, d.submit(t, from, to, newMessage(i, from, to, 200)))
	}
	if res := d.relayq("queue", "check"); res.code != 75 || !strings.Contains(res.stderr, "the daemon is running") {
		t.Errorf("relayq queue check while the daemon runs: %v, want exit 75", res)
	}
	if res := d.relayq("compact"); res.code != 0 || !strings.Contains(res.stdout, "while relayq runs") {
		t.Errorf("relayq compact while the daemon runs: %v, want exit 0", res)
	}
	d.stop()
	if res := d.relayq("queue", "check"); res.code != 0 || !strings.HasSuffix(res.stdout, ": ok\n") {
		t.Fatalf("queue check: %v", res)
	}
	res := d.relayq("compact")
	if res.code != 0 || !strings.Contains(res.stdout, "kept 5 message(s)") {
		t.Fatalf("compact: %v", res)
	}
	if fi, err := os.Stat(filepath.Join(d.dir, "queue.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("queue file after compaction: %v, %v; want mode 0600", fi, err)
	}
	d.start()
	var got []string
	for _, l := range d.queueList(t) {
		got = append(got, l.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("queue after compaction: %v, want %v", got, ids)
	}
}

// TestDamagedQueueFile: the queue file's message pages are damaged while
// relayq is stopped (their page type scrambled, as a bad write would).
// relayq serve refuses to start, exit 65, pointing at `relayq queue
// check`, which lists the damage, says how to recover and exits 65.
func TestDamagedQueueFile(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "damaged@example.org", []string{"rcpt@example.net"}
	for i := range 20 {
		d.submit(t, from, to, newMessage(i, from, to, 5))
	}
	d.stop()
	path := filepath.Join(d.dir, "queue.db")
	// A message record holds each address after its length (a byte for a
	// short one: queue/message_record.go); a body holds it after "To: ".
	if n := scrambleLeafPages(t, path, append([]byte{byte(len(to[0]))}, to[0]...)); n == 0 {
		t.Fatal("found no page holding message records")
	}

	p := d.spawn()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatal("relayq serve started on a damaged queue file")
	}
	if code := p.exitCode(); code != 65 || !strings.Contains(d.log.String(), "run `relayq queue check`") ||
		strings.Contains(d.log.String(), "goroutine ") {
		t.Errorf("relayq serve on a damaged file exited %d, want 65 with a message pointing at relayq queue check (and no crash):\n%s", code, d.log)
	}
	res := d.relayq("queue", "check")
	if res.code != 65 || !strings.Contains(res.stdout, "The file is damaged") || !strings.Contains(res.stdout, "mv "+path+" "+path+".damaged") {
		t.Errorf("queue check of a damaged file: %v", res)
	}
}

// scrambleLeafPages gives every bbolt leaf page of the file at path that
// contains marker a page type that does not exist, and returns how many it
// changed. The page size is read from the first meta page.
func scrambleLeafPages(t *testing.T, path string, marker []byte) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageHeader, leafPage = 16, 0x02
	pageSize := int(binary.LittleEndian.Uint32(data[pageHeader+8:]))
	n := 0
	for off := 2 * pageSize; off+pageSize <= len(data); off += pageSize {
		page := data[off : off+pageSize]
		if binary.LittleEndian.Uint16(page[8:]) == leafPage && bytes.Contains(page, marker) {
			binary.LittleEndian.PutUint16(page[8:], 0x40)
			n++
		}
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDamagedSavedFreelist: relayq was stopped cleanly (it saved bbolt's
// freelist in the file) and the freelist page is then zeroed. relayq serve
// does not let bbolt read it (bbolt would hand out pages in use and
// overwrite queued mail): it exits 65 with one line pointing at `relayq
// compact`, no crash. `relayq queue check` says the same; after `relayq
// compact` relayq starts and delivers every message.
func TestDamagedSavedFreelist(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "freelist@example.org", []string{"rcpt@example.net"}
	for i := range 20 {
		d.submit(t, from, to, newMessage(i, from, to, 50))
	}
	d.stop()
	path := filepath.Join(d.dir, "queue.db")
	zeroFreelistPage(t, path)

	p := d.spawn()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatal("relayq serve started on a queue file with a damaged freelist")
	}
	log := d.log.String()
	if code := p.exitCode(); code != 65 || !strings.Contains(log, "run `relayq compact`") ||
		strings.Contains(log, "goroutine ") || strings.Contains(log, "panic") {
		t.Errorf("relayq serve with a damaged freelist exited %d, want 65 pointing at relayq compact (and no crash):\n%s", code, log)
	}
	if res := d.relayq("queue", "check"); res.code != 65 || !strings.Contains(res.stdout, "freelist") || !strings.Contains(res.stdout, "relayq compact") {
		t.Errorf("queue check of a damaged freelist: %v", res)
	}
	if res := d.relayq("compact"); res.code != 0 || !strings.Contains(res.stdout, "kept 20 message(s)") {
		t.Fatalf("compact: %v", res)
	}
	relay := smtptest.NewServer(t, smtptest.Options{})
	d.settings.set("relay", "url", tomlString(relayURL(relay, false)))
	d.writeConfig()
	d.start()
	waitFor(t, 30*time.Second, "every message delivered", func() bool { return len(relay.Messages()) >= 20 })
	if n := len(relay.Messages()); n != 20 {
		t.Errorf("relay got %d messages, want 20", n)
	}
}

// zeroFreelistPage zeroes the freelist page that the newer bbolt meta
// page of the file at path names.
func zeroFreelistPage(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageHeader = 16
	pageSize := int(binary.LittleEndian.Uint32(data[pageHeader+8:]))
	meta := func(i int) (txid, freelist uint64) {
		m := data[i*pageSize+pageHeader:]
		return binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[32:])
	}
	tx0, fl0 := meta(0)
	tx1, fl1 := meta(1)
	fl := fl0
	if tx1 > tx0 {
		fl = fl1
	}
	if fl == ^uint64(0) {
		t.Fatal("no freelist saved at the clean stop")
	}
	clear(data[int(fl)*pageSize : int(fl+1)*pageSize])
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
