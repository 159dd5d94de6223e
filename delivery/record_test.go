package delivery

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/queue"
	"relayq/smallfs"
	"relayq/transport/smtptest"
)

// queueOnFullDisk opens a queue on a small file system with no headroom,
// puts one message to many recipients in it (its records span several
// pages, so recording its delivery needs pages the file does not have
// yet), then fills the file system. It returns the queue, the message's ID
// and the filler file.
func queueOnFullDisk(t *testing.T) (q *queue.Queue, id, filler string) {
	t.Helper()
	dir := smallfs.Mount(t, "2m")
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []string
	for i := range 200 {
		rcpts = append(rcpts, fmt.Sprintf("recipient-with-a-long-name-%03d@there.example", i))
	}
	id, err = q.Put(t.Context(), queue.Envelope{From: "cron@here.example", Recipients: rcpts}, []byte("Subject: once\r\n\r\nonce\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	filler = filepath.Join(dir, "filler")
	smallfs.Fill(t, filler)
	return q, id, filler
}

// TestUnrecordedOutcomeIsNotSentAgain: the relay takes a message, and the
// queue's file system is full, so the delivery cannot be recorded. The
// message must not be sent again (it was: the lease was given back and the
// message leased and sent at once, in a loop); the record is retried until
// there is room, then the message leaves the queue, sent once.
func TestUnrecordedOutcomeIsNotSentAgain(t *testing.T) {
	q, id, filler := queueOnFullDisk(t)
	r := startOn(t, q, smtptest.Options{}, RetryPolicy{}, 0)
	r.relay.WaitMessages(t, 1, 10*time.Second)
	waitFor(t, "the record to fail three times", func() bool {
		return strings.Count(r.logs.String(), "cannot record attempt") >= 3
	})
	if n := len(r.relay.Messages()); n != 1 {
		t.Fatalf("the relay got the message %d times while its delivery could not be recorded, want once", n)
	}
	if m, err := q.Get(id); err != nil || m.LeasedUntil.IsZero() {
		t.Fatalf("while its outcome waits to be recorded, the message must stay leased: %+v, %v", m, err)
	}

	// Room again: the record goes through and the message leaves the queue.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.emptied(t)
	if n := len(r.relay.Messages()); n != 1 {
		t.Fatalf("the relay got the message %d times, want once", n)
	}
	if a, err := q.Lookup(id); err != nil || a.Archived == nil {
		t.Fatalf("no record of the delivered message: %v", err)
	}
}

// TestUnrecordedAtShutdownIsMarkedPossibleDuplicate: relayq stops while a
// delivery it could not record (full disk) is held. The worker stops
// trying, as a crash would stop it, and the message is left as a crash
// leaves it: still queued, and marked interrupted at the next start, so
// that its next delivery is logged possible_duplicate.
func TestUnrecordedAtShutdownIsMarkedPossibleDuplicate(t *testing.T) {
	q, id, filler := queueOnFullDisk(t)
	path := q.Path()
	r := startOn(t, q, smtptest.Options{}, RetryPolicy{}, 0)
	r.relay.WaitMessages(t, 1, 10*time.Second)
	waitFor(t, "the record to fail", func() bool { return strings.Contains(r.logs.String(), "cannot record attempt") })
	r.stop()
	if !strings.Contains(r.logs.String(), "shutting down with an attempt unrecorded") {
		t.Errorf("no log line for the attempt left unrecorded at shutdown")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(path, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.q = q // closed and checked by the rig
	leases, err := q.Lease(1)
	if err != nil || len(leases) != 1 || leases[0].ID != id {
		t.Fatalf("after the restart: leases %v, %v; want %s", leases, err, id)
	}
	if !leases[0].Interrupted {
		t.Errorf("the message whose delivery was not recorded is not marked interrupted at the next start")
	}
	if err := q.Release(leases[0]); err != nil {
		t.Fatal(err)
	}
	if n := len(r.relay.Messages()); n != 1 {
		t.Fatalf("the relay got the message %d times, want once", n)
	}
}
