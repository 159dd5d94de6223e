package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestArchiveRecordRoundTrip: what archive stores reads back as it was,
// for a typical delivered message, one with every field set, and an odd
// one (no reply, no time, a relay ID the reply does not give).
func TestArchiveRecordRoundTrip(t *testing.T) {
	created := time.Date(2026, 12, 7, 8, 0, 0, 123456789, time.UTC)
	typical := &Archived{
		ID: "01KC0000000000000000", From: "cron@host.example.org", Created: created, Size: 2048, Attempts: 1,
		Submitter: Submitter{UID: 0, Via: "socket", User: "root", Unit: "cron.service"},
		Left:      created.Add(15 * time.Millisecond), Fate: FateDelivered,
		Recipients: []ArchivedRecipient{{
			Address: "root@example.org", Status: StatusDelivered, Attempts: 1, Time: created.Add(3 * time.Millisecond),
			Relay: "smtp://relay.example.net:25", RelayID: "4dQxYz1kLmz9",
			Reply: &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"Ok: queued as 4dQxYz1kLmz9"}, Stage: "dot"},
		}},
	}
	full := &Archived{
		ID: "01KC0000000000000001", From: "", Created: created, Size: 1 << 40, Attempts: 300,
		Submitter: Submitter{UID: -1, Via: "tcp", Addr: "127.0.0.1:40000"},
		Left:      created.Add(-time.Hour), Fate: FateDead,
		Recipients: []ArchivedRecipient{
			{Address: "a@x.org", Status: StatusDead, Attempts: 3, Time: created.Add(time.Hour),
				Reply: &Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"no such user", "", "bye"}, Stage: "rcpt"}},
			{Address: "b@x.org", Status: StatusQueued},
			{Address: "c@x.org", Status: StatusDelivered, RelayID: "given apart", Reply: &Reply{Code: 250}},
			{Address: "d@x.org", Status: StatusUncertain, Reply: &Reply{Code: 0, Lines: []string{"connection reset"}}},
		},
	}
	for _, a := range []*Archived{typical, full} {
		v := encodeArchived(a)
		got, err := decodeArchived([]byte(a.ID), v)
		if err != nil {
			t.Fatalf("decode %s: %v", a.ID, err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", a.ID, got, a)
		}
	}
	// The typical record takes 160 bytes (537 as JSON).
	if n := len(encodeArchived(typical)); n > 180 {
		t.Errorf("a typical archive record takes %d bytes, want at most 180", n)
	}
}

// TestArchiveRecordDamage: a compact record that is cut short, has bytes
// left over or a code no writer uses does not decode.
func TestArchiveRecordDamage(t *testing.T) {
	a := &Archived{
		From: "a@x.org", Created: time.Unix(1e9, 0), Left: time.Unix(1e9+1, 0), Fate: FateDelivered,
		Recipients: []ArchivedRecipient{{Address: "b@x.org", Status: StatusDelivered, Reply: reply250}},
	}
	v := encodeArchived(a)
	// The fate is the byte before the recipient count (0: one byte).
	fate := len(encodeArchived(&Archived{From: a.From, Created: a.Created, Left: a.Left})) - 2
	if v[fate] != codeOf(archiveFates, a.Fate) {
		t.Fatalf("byte %d is not the fate", fate)
	}
	badFate := append([]byte(nil), v...)
	badFate[fate] = byte(len(archiveFates))
	for name, bad := range map[string][]byte{
		"empty":        {},
		"other format": append([]byte{archiveFormat + 1}, v[1:]...),
		"left over":    append(v[:len(v):len(v)], 0),
		"unknown fate": badFate,
		"bad json":     []byte(`{"id":`),
	} {
		if _, err := decodeArchived([]byte("ID"), bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for i := range v {
		if _, err := decodeArchived([]byte("ID"), v[:i]); err == nil {
			t.Errorf("cut to %d of %d bytes: decoded", i, len(v))
		}
	}
}

// TestJSONArchiveRecordsStillRead: a history written as JSON, before the
// compact records, is still looked up, checked and pruned.
func TestJSONArchiveRecordsStillRead(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, HistoryRetention: time.Hour})
	id := put(t, q, "x\r\n", "a@example.com")
	deliver(t, q, "smtp://relay.example.net:25", "a@example.com")
	want := lookup(t, q, id).Archived
	scribble(t, q, bucketArchive, []byte(id), func([]byte) []byte {
		v, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		return v
	})
	got := lookup(t, q, id).Archived
	if got == nil || got.Recipients[0].RelayID != "4XyZ12" || !got.Left.Equal(want.Left) || got.From != want.From {
		t.Fatalf("JSON record read back as %+v, want %+v", got, want)
	}
	if p := q.Check(); len(p) != 0 {
		t.Fatalf("Check: %v", p)
	}
	clk.Advance(2 * time.Hour)
	if n, err := q.PruneHistory(10); n != 1 || err != nil {
		t.Fatalf("prune: %d, %v; want the JSON record pruned", n, err)
	}
}

// TestHistoryBoundedBySize: once the history takes more than
// HistoryMaxSize, the oldest records are pruned, well within their
// retention, until it is under the bound again; the newest stay.
func TestHistoryBoundedBySize(t *testing.T) {
	const bound = 64 << 10
	q, _ := openTest(t, Options{HistoryMaxSize: bound, MaxBatch: 1000})
	var ids []string
	for i := range 1000 {
		ids = append(ids, put(t, q, "x\r\n", fmt.Sprintf("rcpt%d@example.com", i)))
	}
	if n := deliverAll(t, q); n != len(ids) {
		t.Fatalf("delivered %d", n)
	}
	before, records, err := q.HistorySize()
	if err != nil || records != 1000 || before <= bound {
		t.Fatalf("history before: %d bytes, %d records, %v; want over %d", before, records, err, bound)
	}
	pruned, err := q.boundHistory(nil)
	if err != nil {
		t.Fatal(err)
	}
	after, records, _ := q.HistorySize()
	t.Logf("history of 1000 records: %d bytes; pruned %d, leaving %d in %d bytes", before, pruned, records, after)
	if after > bound || pruned == 0 || records+int64(pruned) != 1000 {
		t.Fatalf("after bounding: %d bytes, %d records, %d pruned", after, records, pruned)
	}
	if _, err := q.Lookup(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("the oldest record: %v, want ErrNotFound", err)
	}
	if l := lookup(t, q, ids[len(ids)-1]); l.Archived == nil {
		t.Errorf("the newest record was pruned")
	}
	// Under the bound, the next look measures nothing and prunes nothing.
	if n, err := q.boundHistory(nil); n != 0 || err != nil {
		t.Errorf("second look: pruned %d, %v", n, err)
	}
}

// TestArchivedRelayIDFromTheFullReply: the relay ID an archive record
// keeps is read from the relay's whole reply, also when the history's
// limits cut the line that names it from the stored reply (then it is
// stored apart), and when they do not (then it is read back from the
// reply).
func TestArchivedRelayIDFromTheFullReply(t *testing.T) {
	q, _ := openTest(t, Options{})
	long := make([]string, maxHistoryLines+2)
	for i := range long {
		long[i] = "250-fine"
	}
	long[len(long)-1] = "Ok: queued as LATE42"
	for _, c := range []struct {
		lines []string
		want  string
	}{
		{[]string{"2.0.0 Ok: queued as 4dQxYz1kLmz9"}, "4dQxYz1kLmz9"},
		{long, "LATE42"},
		{[]string{"Ok"}, ""},
	} {
		id := put(t, q, "x\r\n", "a@x.org")
		l := leaseOne(t, q)
		if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered, Reply: &Reply{Code: 250, Lines: c.lines}}}); err != nil {
			t.Fatal(err)
		}
		lk, err := q.Lookup(id)
		if err != nil || lk.Archived == nil {
			t.Fatalf("Lookup(%s) = %+v, %v", id, lk, err)
		}
		if got := lk.Archived.Recipients[0].RelayID; got != c.want {
			t.Errorf("relay ID %q, want %q (reply %q)", got, c.want, c.lines)
		}
	}
}
