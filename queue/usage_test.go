package queue

import (
	"context"
	"fmt"
	"testing"
)

// TestFootprints: every queued message once, and every dead letter once
// more, with the submitter and size as stored.
func TestFootprints(t *testing.T) {
	q, _ := openTest(t, Options{})
	live := put(t, q, "Subject: a\r\n\r\n12345\r\n", "a@example.net")
	partial := put(t, q, "Subject: b\r\n\r\n1\r\n", "b1@example.net", "b2@example.net")
	// The earliest due message is leased first: fail b1 of partial.
	l := leaseOne(t, q)
	if l.ID != live {
		t.Fatalf("leased %s, want %s", l.ID, live)
	}
	if err := q.Release(l); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Hold([]string{live}); err != nil {
		t.Fatal(err)
	}
	fail(t, q, reply550, "b1@example.net")

	got := map[string]int{}
	err := q.Footprints(func(f Footprint) {
		got[fmt.Sprintf("%s dead=%v uid=%d size=%d", f.ID, f.Dead, f.Submitter.UID, f.Size)]++
		if f.Created.IsZero() {
			t.Errorf("%s: no creation time", f.ID)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		live + " dead=false uid=1000 size=21":    1,
		partial + " dead=false uid=1000 size=17": 1,
		partial + " dead=true uid=1000 size=17":  1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("footprints %v, want %v", got, want)
	}
}

// BenchmarkFootprints reads 10,000 queued messages: the cost of one
// refresh of the intake's queued-bytes figures.
func BenchmarkFootprints(b *testing.B) {
	q, _ := openTest(b, Options{})
	for i := range 10000 {
		env := Envelope{From: "cron@example.org", Recipients: []string{"a@example.net", "b@example.net"}, Submitter: Submitter{UID: i % 50, User: "user", Unit: "cron.service", Via: "socket"}}
		if _, err := q.Put(context.Background(), env, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := q.Footprints(func(Footprint) { n++ }); err != nil || n != 10000 {
			b.Fatal(n, err)
		}
	}
}
