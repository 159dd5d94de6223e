package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/smallfs"
)

// deliverAll leases every due message and records it delivered; every
// record must succeed.
func deliverAll(t *testing.T, q *Queue) int {
	t.Helper()
	n := 0
	for {
		ls, err := q.Lease(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 {
			return n
		}
		for _, l := range ls {
			if _, err := q.Record(l, delivered(l)); err != nil {
				t.Fatalf("recording delivery %d: %v", n, err)
			}
			n++
		}
	}
}

func delivered(l *Lease) []Outcome {
	var out []Outcome
	for _, r := range l.Pending() {
		out = append(out, Outcome{Address: r.Address, Result: Delivered})
	}
	return out
}

// TestMinFreeRefusesPutLeavingRoomToRecord: the queue takes messages on a
// small file system until the free space falls below MinFree, then
// refuses them (ErrFull) with room left over: every message it took can
// then be recorded delivered, and once they are, their room inside the
// file counts again and it takes mail again.
func TestMinFreeRefusesPutLeavingRoomToRecord(t *testing.T) {
	dir := smallfs.Mount(t, "4m")
	q := openAt(t, filepath.Join(dir, "queue.db"), Options{MinFree: 1 << 20})
	if st := q.Space(); st.Reserve != 512<<10 || st.Refusing || st.MinFree != 1<<20 {
		t.Fatalf("space at start: %+v", st)
	}
	body := strings.Repeat("0123456789abcdef", 2<<10) // 32 KiB
	taken := 0
	var err error
	for ; taken < 1000; taken++ {
		if _, err = q.Put(t.Context(), Envelope{From: "a@example.org", Recipients: []string{"b@example.net"}}, []byte(body)); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) || taken == 0 {
		t.Fatalf("after %d messages: %v, want ErrFull", taken, err)
	}
	st := q.Space()
	if !st.Refusing || st.Free <= 0 {
		t.Fatalf("space once refusing: %+v", st)
	}
	t.Logf("%d messages taken; then %d bytes free on the file system", taken, st.Free)
	if n := deliverAll(t, q); n != taken {
		t.Fatalf("delivered %d of %d", n, taken)
	}
	if st := q.Space(); st.Refusing || st.Reserve == 0 {
		t.Fatalf("space once delivered: %+v, want taking mail with the reserve in place", st)
	}
	put(t, q, body, "c@example.net")
}

// TestReserveIsReleasedToRecordOnAFullDisk: something else fills the file
// system. Recording a delivery that needs new pages would fail; the queue
// gives up its reserve for it, and refuses new mail until there is room for
// the reserve again.
func TestReserveIsReleasedToRecordOnAFullDisk(t *testing.T) {
	dir := smallfs.Mount(t, "4m")
	q := openAt(t, filepath.Join(dir, "queue.db"), Options{MinFree: 1 << 20})
	var rcpts []string
	for i := range 200 {
		// Records spanning several pages: recording needs new ones.
		rcpts = append(rcpts, fmt.Sprintf("recipient-with-a-long-name-%03d@there.example", i))
	}
	put(t, q, "x\r\n", rcpts...)
	filler := filepath.Join(dir, "filler")
	smallfs.Fill(t, filler)
	if _, err := q.Put(t.Context(), Envelope{From: "a@example.org", Recipients: []string{"b@example.net"}}, []byte("x\r\n")); !errors.Is(err, ErrFull) {
		t.Fatalf("Put on a full disk: %v, want ErrFull", err)
	}

	l := leaseOne(t, q)
	if _, err := q.Record(l, delivered(l)); err != nil {
		t.Fatalf("recording a delivery on a full disk: %v", err)
	}
	if _, err := os.Stat(q.Path() + reserveSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reserve file is still there: %v", err)
	}
	if st := q.Space(); !st.Refusing || st.Reserve != 0 {
		t.Fatalf("space with the reserve used: %+v", st)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for st := q.Space(); st.Refusing || st.Reserve == 0; st = q.Space() {
		if time.Now().After(deadline) {
			t.Fatalf("space after the disk was freed: %+v, want the reserve back", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	put(t, q, "x\r\n", "c@example.net")
}

// TestReserveIsKeptForDeliveries: on a full disk a deferral's record does
// not take the reserve (it fails, and the message is tried again later),
// so the reserve is still there for the delivery that follows. When
// deferrals took it, the deliveries after the relay came back found no
// room left to record and the workers stalled.
func TestReserveIsKeptForDeliveries(t *testing.T) {
	dir := smallfs.Mount(t, "4m")
	q := openAt(t, filepath.Join(dir, "queue.db"), Options{MinFree: 1 << 20, LeaseTimeout: 50 * time.Millisecond})
	var rcpts []string
	for i := range 200 {
		rcpts = append(rcpts, fmt.Sprintf("recipient-with-a-long-name-%03d@there.example", i))
	}
	put(t, q, "x\r\n", rcpts...)
	filler := filepath.Join(dir, "filler")
	smallfs.Fill(t, filler)

	l := leaseOne(t, q)
	var deferred []Outcome
	for _, r := range l.Pending() {
		deferred = append(deferred, Outcome{Address: r.Address, Result: Deferred, NextAttempt: time.Now()})
	}
	if _, err := q.Record(l, deferred); err == nil {
		t.Fatal("a deferral was recorded on a full disk: it took the reserve")
	}
	if st := q.Space(); st.Reserve == 0 {
		t.Fatalf("space after a deferral on a full disk: %+v, want the reserve kept", st)
	}
	time.Sleep(100 * time.Millisecond) // the lease runs out
	l = leaseOne(t, q)
	if _, err := q.Record(l, delivered(l)); err != nil {
		t.Fatalf("recording the delivery that follows: %v", err)
	}
}

// TestFullDiskDeliveriesNeedNoRunOfFreePages: the queue is filled to its
// headroom with bodies of mixed sizes while deferrals are recorded, then
// something else takes the last byte of the disk, and the messages are
// recorded delivered in an order unlike the one they came in. Every record
// must fit: deleting a body must not rewrite another message's body. When
// bodies shared leaves, a delete needed a free run as large as the body
// beside it, the file's free pages were too fragmented for that, and the
// records failed (in the daemon, every worker then held an outcome it
// could not record and the deliveries stalled for good).
func TestFullDiskDeliveriesNeedNoRunOfFreePages(t *testing.T) {
	dir := smallfs.Mount(t, "6m")
	q := openAt(t, filepath.Join(dir, "queue.db"), Options{MinFree: 512 << 10, LeaseTimeout: time.Hour})
	sizes := []int{42 << 10, 300, 120 << 10, 3 << 10, 42 << 10, 900, 300 << 10, 10 << 10}
	order := map[string]int{} // message ID → when it was put
	taken := 0
	for ; taken < 2000; taken++ {
		body := strings.Repeat("x", sizes[taken%len(sizes)]-2) + "\r\n"
		id, err := q.Put(t.Context(), Envelope{From: "a@example.org", Recipients: []string{"b@example.net"}}, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
		order[id] = taken
		if taken%10 == 0 { // a round of deferrals, as a relay that is down gives
			ls, err := q.Lease(1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				var out []Outcome
				for _, r := range l.Pending() {
					out = append(out, Outcome{Address: r.Address, Result: Deferred, NextAttempt: time.Now()})
				}
				if _, err := q.Record(l, out); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	smallfs.Fill(t, filepath.Join(dir, "filler"))
	ls, err := q.Lease(5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != taken || taken < 20 {
		t.Fatalf("leased %d of %d messages", len(ls), taken)
	}
	// First those stored beside the largest bodies (300 KiB, sizes[6]),
	// then the rest, newest first.
	beside := func(l *Lease) bool { i := order[l.ID] % len(sizes); return i == 5 || i == 7 }
	slices.SortFunc(ls, func(a, b *Lease) int {
		if beside(a) != beside(b) {
			return map[bool]int{true: -1, false: 1}[beside(a)]
		}
		return order[b.ID] - order[a.ID]
	})
	failed := 0
	for _, l := range ls {
		if _, err := q.Record(l, delivered(l)); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d deliveries could not be recorded on the full disk (space %+v)", failed, taken, q.Space())
	}
	if problems := q.Check(); len(problems) > 0 {
		t.Errorf("queue check: %v", problems)
	}
}
