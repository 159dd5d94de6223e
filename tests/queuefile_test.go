package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"relayq/transport/smtptest"
)

// End-to-end tests of how far relayq trusts its queue file (issue 11 §5):
// a record that does not decode, a body whose bytes changed, a file of 0
// bytes, a file others may read. Each damages the file of a stopped
// daemon, as a bad disk, a stray write or a careless restore would, then
// runs the real binary on it.

// scribbleDB changes one value of the daemon's queue file with bbolt
// directly (the daemon must be stopped): change gets a copy of the value
// under key in bucket and returns what to store instead.
func scribbleDB(t *testing.T, d *daemon, bucket string, key []byte, change func([]byte) []byte) {
	t.Helper()
	scribbleIn(t, d, func(tx *bolt.Tx) (*bolt.Bucket, []byte) { return tx.Bucket([]byte(bucket)), key }, change)
}

// scribbleBody changes the first chunk of message id's body, in whichever
// of its two forms it is stored (queue/body.go): a value under the ID,
// "/" and chunk number 0 as a big-endian uint32, or, for a body larger
// than a quarter page, key 0 of a bucket named by the ID.
func scribbleBody(t *testing.T, d *daemon, id string, change func([]byte) []byte) {
	t.Helper()
	scribbleIn(t, d, func(tx *bolt.Tx) (*bolt.Bucket, []byte) {
		bodies := tx.Bucket([]byte("bodies"))
		if b := bodies.Bucket([]byte(id)); b != nil {
			return b, []byte{0, 0, 0, 0}
		}
		return bodies, append([]byte(id+"/"), 0, 0, 0, 0)
	}, change)
}

// scribbleIn changes the value where finds it.
func scribbleIn(t *testing.T, d *daemon, where func(*bolt.Tx) (*bolt.Bucket, []byte), change func([]byte) []byte) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(d.dir, "queue.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, key := where(tx)
		v := b.Get(key)
		if v == nil {
			return fmt.Errorf("no %q in the queue file", key)
		}
		return b.Put(key, change(bytes.Clone(v)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDamagedRecordDoesNotBreakTheQueue: swaks-like SMTP on the unix
// socket → relayq (relay down, so mail stays queued); relayq stopped, the
// record of two of three messages overwritten with bytes that do not
// decode, relayq started again. Every listing still works and shows them
// as damaged with their IDs (before, one bad record made `queue list`,
// `status`, `mailq`, `show`, `queue status` and `delete` fail for the
// whole queue);
// status counts them and reports unhealthy; hold refuses them (65);
// expire keeps the body as a dead letter of reason damaged; delete
// removes the other; the good message is untouched.
func TestDamagedRecordDoesNotBreakTheQueue(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "damaged@example.org", []string{"rcpt@example.net"}
	var ids []string
	for i := range 3 {
		ids = append(ids, d.submit(t, from, to, newMessage(i, from, to, 3)))
	}
	good, expired, deleted := ids[0], ids[1], ids[2]
	d.stop()
	scribbleDB(t, d, "messages", []byte(expired), func(v []byte) []byte { v[0] ^= 0xff; return v })
	scribbleDB(t, d, "messages", []byte(deleted), func(v []byte) []byte { return v[:len(v)/3] })
	d.start()

	list := d.queueList(t)
	states := map[string]string{}
	for _, l := range list {
		states[l.ID] = l.State
	}
	if len(list) != 3 || states[expired] != "damaged" || states[deleted] != "damaged" || states[good] == "damaged" {
		t.Errorf("queue list: %v; want %s and %s damaged, %s not", states, expired, deleted, good)
	}
	if res := d.relayq("queue", "list"); res.code != 0 || !strings.Contains(res.stdout, expired+"  damaged") {
		t.Errorf("queue list (table): %v", res)
	}
	if res := d.relayq("queue", "list", "--state", "damaged", "--json"); res.code != 0 || strings.Count(res.stdout, `"id"`) != 2 {
		t.Errorf("queue list --state damaged: %v", res)
	}
	res := d.relayq("status", "--json")
	var st struct {
		Damaged  int      `json:"damaged"`
		Messages int      `json:"messages"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || res.code != 1 || st.Damaged != 2 || st.Messages != 3 || len(st.Problems) != 1 {
		t.Errorf("status --json: %+v (%v); want exit 1 (unhealthy), 2 damaged of 3", st, res)
	}
	if res := d.relayq("mailq"); res.code != 0 || !strings.Contains(res.stdout, expired) || !strings.Contains(res.stdout, "damaged") ||
		!strings.Contains(res.stdout, good) || !strings.Contains(res.stdout, "in 3 Requests") {
		t.Errorf("mailq: %v", res)
	}
	if res := d.relayq("queue", "show", expired); res.code != 0 || !strings.Contains(res.stdout, "damaged") {
		t.Errorf("queue show of a damaged record: %v", res)
	}
	if res := d.relayq("queue", "status", expired); res.code != 0 || !strings.Contains(res.stdout, "damaged") {
		t.Errorf("queue status of a damaged record: %v", res)
	}
	if res := d.relayq("queue", "hold", expired); res.code != 65 || !strings.Contains(res.stderr, "damaged") {
		t.Errorf("queue hold of a damaged record: %v; want exit 65", res)
	}

	if res := d.relayq("queue", "expire", expired); res.code != 0 {
		t.Errorf("queue expire of a damaged record: %v", res)
	}
	if res := d.relayq("queue", "delete", deleted); res.code != 0 {
		t.Errorf("queue delete of a damaged record: %v", res)
	}
	if list := d.queueList(t); len(list) != 1 || list[0].ID != good {
		t.Errorf("queue after expire and delete: %+v; want only %s", list, good)
	}
	dl, ok := findDead(d.deadList(t), expired)
	if !ok || dl.Reason != "damaged" {
		t.Errorf("dead letter of the expired record: %+v (found %v); want reason damaged", dl, ok)
	}
	if res := d.relayq("dead", "show", "--body", expired); res.code != 0 || !strings.Contains(res.stdout, "Subject:") {
		t.Errorf("dead show --body of the expired record: %v; want the body kept", res)
	}

	d.stop()
	if res := d.relayq("queue", "check"); res.code != 0 {
		t.Errorf("queue check after the damaged records were removed: %v", res)
	}
}

// TestCorruptBodyIsNeverSent: two messages queued while the relay is
// down; relayq stopped and one byte of one body flipped. `relayq queue
// check` names that message as corrupt (it used to say ok). Started with a
// working smtptest relay, relayq delivers the intact message and never
// sends the corrupt one, not even its envelope: it goes to the dead
// letters with reason corrupt.
func TestCorruptBodyIsNeverSent(t *testing.T) {
	d := startDaemon(t, nil)
	from := "corrupt@example.org"
	intact := d.submit(t, from, []string{"intact@example.net"}, newMessage(1, from, []string{"intact@example.net"}, 20))
	corrupt := d.submit(t, from, []string{"corrupt@example.net"}, newMessage(2, from, []string{"corrupt@example.net"}, 20))
	d.stop()
	scribbleBody(t, d, corrupt, func(v []byte) []byte { v[len(v)/2] ^= 0x20; return v })

	res := d.relayq("queue", "check")
	if res.code != 65 || !strings.Contains(res.stdout, corrupt) || !strings.Contains(res.stdout, "corrupt") || strings.Contains(res.stdout, intact) {
		t.Errorf("queue check of a corrupt body: %v; want exit 65 naming %s as corrupt", res, corrupt)
	}

	relay := smtptest.NewServer(t, smtptest.Options{})
	d.settings.set("relay", "url", tomlString(relayURL(relay, false)))
	d.writeConfig()
	d.start()
	got := relay.WaitMessages(t, 1, 20*time.Second)
	d.waitQueueEmpty(t, 20*time.Second)
	dl, ok := findDead(d.deadList(t), corrupt)
	if !ok || dl.Reason != "corrupt" || len(dl.Recipients) != 1 || !strings.Contains(dl.Recipients[0].LastReply, "corrupt") {
		t.Errorf("dead letter of the corrupt message: %+v (found %v); want reason corrupt", dl, ok)
	}
	if n := countRcpt(relay, "corrupt@example.net"); n != 0 || len(relay.Messages()) != 1 || got[0].To[0] != "intact@example.net" {
		t.Errorf("the relay saw the corrupt message (%d RCPT) or not just the intact one: %+v", n, relay.Messages())
	}
	if recs := d.deliveryLog(corrupt); len(recs) != 1 || recs[0]["status"] != "dead" || recs[0]["reason"] != "corrupt" {
		t.Errorf("delivery log of the corrupt message: %v", recs)
	}
}

// TestEmptyQueueFileIsSetAside: an existing 0-byte queue.db (a truncated
// file, a botched restore) is not silently made into a new, empty queue:
// relayq renames it to queue.db.empty.<time>, logs an ERROR saying so,
// and works on a new file. Beforehand, `queue check` and `mailq` say that
// the file is empty.
func TestEmptyQueueFileIsSetAside(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := newDaemon(t, relay)
	if err := os.WriteFile(filepath.Join(d.dir, "queue.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// With the daemon stopped, check and mailq say the file is empty
	// (they used to fail with bbolt's "bad file descriptor").
	if res := d.relayq("queue", "check"); res.code != 65 || !strings.Contains(res.stdout, "empty (0 bytes)") || !strings.Contains(res.stdout, "set") {
		t.Errorf("queue check of an empty file: %v; want exit 65 saying it is empty and will be set aside", res)
	}
	if res := d.relayq("mailq"); res.code != 0 || !strings.Contains(res.stderr, "empty (0 bytes)") {
		t.Errorf("mailq on an empty file, daemon stopped: %v", res)
	}
	d.start()
	aside, _ := filepath.Glob(filepath.Join(d.dir, "queue.db.empty.*"))
	if len(aside) != 1 {
		t.Fatalf("set aside: %v; want one queue.db.empty.<time>", aside)
	}
	var logged bool
	for line := range strings.Lines(d.log.String()) {
		rec := parseLogfmt(strings.TrimSpace(line))
		logged = logged || rec["level"] == "ERROR" && rec["set_aside"] == aside[0]
	}
	if !logged {
		t.Errorf("no ERROR line naming %s in the log", aside[0])
	}
	from, to := "empty@example.org", []string{"rcpt@example.net"}
	d.submit(t, from, to, newMessage(1, from, to, 3))
	relay.WaitMessages(t, 1, 20*time.Second)
}

// TestQueueFileModeIsFixed: a queue.db someone made readable by others
// (0644) is set back to 0600 when relayq starts, with a warning naming
// the mode it found.
func TestQueueFileModeIsFixed(t *testing.T) {
	d := startDaemon(t, nil)
	d.stop()
	path := filepath.Join(d.dir, "queue.db")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	d.start()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("queue.db mode after start: %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	var warned bool
	for line := range strings.Lines(d.log.String()) {
		rec := parseLogfmt(strings.TrimSpace(line))
		warned = warned || rec["level"] == "WARN" && rec["mode"] == "0644" && rec["path"] == path
	}
	if !warned {
		t.Error("no warning naming the mode 0644 in the log")
	}
}

// TestDamagedDeadLetterDoesNotBreakTheDeadLetters: SMTP on the unix
// socket → relayq → smtptest relay answering 550, so two messages die;
// relayq stopped, one dead letter's record overwritten with bytes that do
// not decode, relayq started. `dead list` (which used to fail for every
// dead letter) lists it with its ID, `dead show` says it is damaged,
// `status` counts it and reports unhealthy, and `dead purge ID` removes it.
func TestDamagedDeadLetterDoesNotBreakTheDeadLetters(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(10, smtptest.Reply(550, "5.1.1 no such user"))},
	}})
	d := startDaemon(t, relay)
	from, to := "deaddamaged@example.org", []string{"gone@example.net"}
	good := d.submit(t, from, to, newMessage(1, from, to, 3))
	bad := d.submit(t, from, to, newMessage(2, from, to, 3))
	waitFor(t, 20*time.Second, "two dead letters", func() bool { return len(d.deadList(t)) == 2 })
	d.stop()
	scribbleDB(t, d, "dead", []byte(bad), func(v []byte) []byte { return append([]byte("\x00"), v...) })
	d.start()

	dead := d.deadList(t)
	if len(dead) != 2 || dead[0].ID != good || dead[1].ID != bad {
		t.Errorf("dead list: %+v; want %s and the damaged %s", dead, good, bad)
	}
	if res := d.relayq("dead", "list"); res.code != 0 || !strings.Contains(res.stdout, bad+"  dead (damaged)") {
		t.Errorf("dead list (table): %v", res)
	}
	if res := d.relayq("dead", "show", bad); res.code != 0 || !strings.Contains(res.stdout, "damaged") {
		t.Errorf("dead show of a damaged dead letter: %v", res)
	}
	if res := d.relayq("status"); res.code != 1 || !strings.Contains(res.stdout, "1 damaged") {
		t.Errorf("status: %v; want exit 1 (unhealthy) counting 1 damaged dead letter", res)
	}
	if res := d.relayq("dead", "purge", bad); res.code != 0 {
		t.Errorf("dead purge of a damaged dead letter: %v", res)
	}
	if dead := d.deadList(t); len(dead) != 1 || dead[0].ID != good {
		t.Errorf("dead list after purge: %+v", dead)
	}
}
