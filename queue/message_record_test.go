package queue

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jsonRecord is the stored message record v in the JSON layout every
// relayq wrote before the compact one (message_record.go), for tests of
// files from those relayqs.
func jsonRecord(t testing.TB, v []byte) []byte {
	t.Helper()
	m, err := decodeMessage(v)
	if err != nil {
		t.Fatalf("record %q: %v", v, err)
	}
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// at is a time as decodeMessage gives it back (time.Unix: local, no
// monotonic reading), so that round trips compare with reflect.DeepEqual.
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return time.Unix(0, t.UnixNano())
}

// recordSamples are a typical new message and one with every field set.
func recordSamples() (typical, full *Message) {
	created := at("2026-12-07T08:00:00.123456789Z")
	sum := uint32(0xdeadbeef)
	typical = &Message{
		ID: "1HVQKJCE0B24SXNCNDTY", From: "cron@host.example.org", Created: created, Size: 5000, NextAttempt: created,
		Submitter:  Submitter{UID: 0, Via: "socket", User: "root", Unit: "cron.service"},
		Recipients: []Recipient{{Address: "root@example.org", Status: StatusQueued}},
		BodyCRC32C: &sum,
	}
	sum2 := uint32(0)
	reply := &Reply{Code: 451, Enhanced: "4.7.1", Lines: []string{"greylisted", "", "try later"}, Stage: "rcpt"}
	full = &Message{
		ID: "1HVQKJCE0B24SXNCNDTZ", From: "", Created: created, Size: 1 << 40, Attempts: 300,
		Submitter: Submitter{UID: -1, Via: "tcp", Addr: "[::1]:40000"},
		UTF8:      true, EightBit: true, DSN: DSN{Return: "HDRS", EnvelopeID: "env+2Bid"},
		NextAttempt: at("2026-12-08T00:00:00Z"), Held: true, HeldSince: at("2026-12-07T09:00:00Z"),
		Requeued: at("2026-12-07T08:30:00Z"), BodyCRC32C: &sum2,
		Recipients: []Recipient{
			{Address: "a@x.org", Status: StatusDeferred, Attempts: 3, NextAttempt: at("2026-12-08T00:00:00Z"),
				LastAttempt: at("2026-12-07T08:59:00Z"), LastReply: reply, Relay: "smtp://relay.example.net:25",
				DSN: RecipientDSN{Notify: []string{"FAILURE", "DELAY"}, OrigType: "rfc822", Orig: "a@x.org"}},
			{Address: "ü@x.org", Status: StatusUncertain, Attempts: 1, LastReply: &Reply{Lines: []string{"reset"}, Stage: "dot"}},
			{Address: "c@x.org", Status: StatusDelivered, Attempts: 2, LastReply: &Reply{Code: 250}},
			{Address: "d@x.org", Status: StatusDead, DSN: RecipientDSN{Notify: []string{"NEVER"}}},
		},
		History: []Attempt{
			{Relay: "smtp://relay.example.net:25", Results: []AttemptResult{{Recipients: []string{"a@x.org", "ü@x.org"}, Status: StatusDeferred}}},
			{Time: at("2026-12-07T08:59:00Z"), Relay: "lmtp:/run/lmtp", Duration: 1500 * time.Millisecond,
				Transcript: "> RCPT TO:<a@x.org>\n< 451 4.7.1 greylisted\n",
				Results: []AttemptResult{
					{Recipients: []string{"a@x.org"}, Status: StatusDeferred, Reply: reply},
					{Recipients: []string{"c@x.org"}, Status: StatusDelivered, Reply: &Reply{Code: 250, Lines: []string{"ok"}}},
				}},
		},
	}
	return typical, full
}

// TestMessageRecordRoundTrip: what Put and Record store reads back as it
// was, for a typical new message and one with every field set, and takes
// far fewer bytes than the JSON it replaces.
func TestMessageRecordRoundTrip(t *testing.T) {
	typical, full := recordSamples()
	for _, m := range []*Message{typical, full} {
		v, err := encodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != messageFormat {
			t.Fatalf("%s stored as %q, not compact", m.ID, v)
		}
		got, err := decodeMessage(v)
		if err != nil {
			t.Fatalf("decode %s: %v", m.ID, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", m.ID, got, m)
		}
	}
	v, _ := encodeMessage(typical)
	j, _ := json.Marshal(typical)
	t.Logf("typical record: %d bytes (JSON: %d)", len(v), len(j))
	if len(v) > 130 {
		t.Errorf("a typical message record takes %d bytes, want at most 130 (JSON: %d)", len(v), len(j))
	}
}

// TestMessageRecordNeverStoresLeaseOrDamage: the fields that live in
// memory only are not written.
func TestMessageRecordNeverStoresLeaseOrDamage(t *testing.T) {
	typical, _ := recordSamples()
	m := *typical
	m.LeasedUntil, m.Damaged = time.Now(), "x"
	v, _ := encodeMessage(&m)
	got, err := decodeMessage(v)
	if err != nil || !got.LeasedUntil.IsZero() || got.Damaged != "" {
		t.Errorf("decoded %+v, %v: lease or damage stored", got, err)
	}
}

// TestMessageRecordFallsBackToJSON: a message the compact form cannot
// hold exactly (a time past Unix nanoseconds, a status nobody writes) is
// stored as JSON and reads back as it was.
func TestMessageRecordFallsBackToJSON(t *testing.T) {
	typical, _ := recordSamples()
	far := *typical
	far.NextAttempt = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	odd := *typical
	odd.Recipients = []Recipient{{Address: "a@x.org", Status: "bounced"}}
	noTime := *typical
	noTime.Created = time.Time{}
	for name, m := range map[string]*Message{"far": &far, "odd status": &odd, "zero created": &noTime} {
		v, err := encodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != '{' {
			t.Errorf("%s: stored compact (%q), which cannot hold it", name, v)
			continue
		}
		got, err := decodeMessage(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.NextAttempt.Equal(m.NextAttempt) || !got.Created.Equal(m.Created) || got.Recipients[0].Status != m.Recipients[0].Status {
			t.Errorf("%s: read back as %+v", name, got)
		}
	}
}

// TestMessageRecordDamage: a compact record cut short, with bytes left
// over, an unknown code or flag, or another format does not decode.
func TestMessageRecordDamage(t *testing.T) {
	_, full := recordSamples()
	v, _ := encodeMessage(full)
	damaged := map[string][]byte{
		"empty":        {},
		"other format": append([]byte{messageFormat + 1}, v[1:]...),
		"left over":    append(v[:len(v):len(v)], 0),
		"bad json":     []byte(`{"id":`),
	}
	for cut := 1; cut < len(v); cut += 7 {
		damaged["cut at "+strconv.Itoa(cut)] = v[:cut]
	}
	// Set a flag bit nobody writes, and give a recipient a status code
	// past recordStatuses: each byte is found as the one that differs
	// between two records that differ only there.
	utf8 := *full
	utf8.UTF8 = false
	flags := bytes.Clone(v)
	flags[differingByte(t, full, &utf8)] |= 0x80
	damaged["unknown flags"] = flags
	queued := *full
	queued.Recipients = slices.Clone(full.Recipients)
	queued.Recipients[0].Status = StatusQueued
	status := bytes.Clone(v)
	status[differingByte(t, full, &queued)] = byte(len(recordStatuses))
	damaged["unknown status"] = status
	for name, bad := range damaged {
		if m, err := decodeMessage(bad); err == nil {
			t.Errorf("%s: decoded as %+v", name, m)
		}
	}
}

// differingByte is where the compact records of a and b differ, which
// must be in one byte only.
func differingByte(t *testing.T, a, b *Message) int {
	t.Helper()
	va, _ := encodeMessage(a)
	vb, _ := encodeMessage(b)
	at := -1
	for i := range va {
		if len(va) != len(vb) || va[i] != vb[i] && at >= 0 {
			t.Fatalf("records differ in more than one byte:\n%q\n%q", va, vb)
		}
		if va[i] != vb[i] {
			at = i
		}
	}
	return at
}

// TestDamagedCompactRecordIsCountedNotFatal: a compact record damaged
// inside (cut short) is what a damaged JSON record was: listed and
// counted as damaged, never leased, named by Check, removable; the other
// messages go on.
func TestDamagedCompactRecordIsCountedNotFatal(t *testing.T) {
	q, _ := openTest(t, Options{})
	good := put(t, q, "good\r\n", "a@x.org")
	bad := put(t, q, "bad\r\n", "b@x.org")
	scribble(t, q, bucketMessages, []byte(bad), func(v []byte) []byte { return v[:len(v)-3] })
	if m, err := q.Get(bad); !errors.Is(err, ErrRecordDamaged) || m.State() != StateDamaged {
		t.Errorf("Get = %+v, %v; want the damaged stand-in", m, err)
	}
	sum, err := q.Summarize(time.Time{})
	if err != nil || sum.Damaged != 1 || sum.Queued != 1 {
		t.Errorf("Summarize = %+v, %v; want 1 queued, 1 damaged", sum, err)
	}
	if p := q.Check(); len(p) != 1 || !strings.Contains(p[0].Error(), bad) {
		t.Errorf("Check = %v; want the damaged record named", p)
	}
	leases, err := q.Lease(10)
	if err != nil || len(leases) != 1 || leases[0].ID != good {
		t.Fatalf("Lease = %v, %v; want only %s", leases, err, good)
	}
	if _, err := q.Record(leases[0], []Outcome{{Address: "a@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Delete, bad); err != nil {
		t.Fatalf("Delete(damaged): %v", err)
	}
	// The cleanup check finds the queue clean.
}

// TestJSONLayoutFileStillDelivered opens a queue file written by relayq
// before the compact record (main at 5675b2f: every message record JSON;
// testdata/json-layout.db.gz, made with a fixed clock of 2026-12-01 09:00
// UTC): five messages, one with DSN, SMTPUTF8 and 8BITMIME, one deferred
// with its history, one held, one with a body in a bucket of its own, one
// with a recipient dead and one uncertain. Every record reads as it was
// written, Check passes, the messages are delivered with their bodies
// intact, and what is written back is compact.
func TestJSONLayoutFileStillDelivered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	gunzip(t, "testdata/json-layout.db.gz", path)
	q := openAt(t, path, Options{})
	msgs, err := q.List()
	if err != nil || len(msgs) != 5 {
		t.Fatalf("List = %d messages, %v; want 5", len(msgs), err)
	}
	byFrom := map[string]*Message{}
	err = q.db.View(func(tx *boltTx) error {
		for _, m := range msgs {
			byFrom[m.From] = m
			if v := tx.Bucket(bucketMessages).Get([]byte(m.ID)); len(v) == 0 || v[0] != '{' {
				t.Errorf("%s is not stored as JSON in the old file", m.ID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dsn := byFrom["alice@example.org"]
	if dsn == nil || !dsn.UTF8 || !dsn.EightBit || dsn.DSN.EnvelopeID != "env-1" || dsn.Recipients[0].DSN.Orig != "b@example.net" || dsn.BodyCRC32C == nil {
		t.Errorf("the DSN message reads as %+v", dsn)
	}
	deferred := byFrom[""]
	if deferred == nil || len(deferred.History) != 1 || deferred.History[0].Transcript == "" || deferred.Recipients[0].LastReply.Lines[1] != "greylisted" {
		t.Errorf("the deferred message reads as %+v", deferred)
	}
	partial := byFrom["p@example.org"]
	if partial == nil || partial.Recipients[0].Status != StatusDead || partial.Recipients[1].Status != StatusUncertain {
		t.Errorf("the partly dead message reads as %+v", partial)
	}
	if held := byFrom["h@example.org"]; held == nil || !held.Held {
		t.Errorf("the held message reads as %+v", held)
	} else if err := one(t, q.Unhold, held.ID); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"alice@example.org": 5000, "": 900, "h@example.org": 20, "big@example.org": 40000, "p@example.org": 3000}
	leases, err := q.Lease(10)
	if err != nil || len(leases) != 5 {
		t.Fatalf("Lease = %d, %v; want 5", len(leases), err)
	}
	for _, l := range leases {
		if err := q.VerifyBody(l.Message); err != nil {
			t.Error(err)
		}
		body, err := io.ReadAll(q.Body(l.ID))
		if err != nil || len(body) != sizes[l.From] || !bytes.HasPrefix([]byte("line of the old layout "), body[:min(len(body), 23)]) {
			t.Errorf("body of %s: %d bytes, %v; want %d", l.ID, len(body), err, sizes[l.From])
		}
		var outcomes []Outcome
		for _, r := range l.Pending() {
			outcomes = append(outcomes, Outcome{Address: r.Address, Result: Deferred, NextAttempt: time.Now().Add(time.Hour)})
		}
		if _, err := q.Record(l, outcomes); err != nil {
			t.Fatal(err)
		}
	}
	err = q.db.View(func(tx *boltTx) error {
		for _, m := range msgs {
			if v := tx.Bucket(bucketMessages).Get([]byte(m.ID)); len(v) == 0 || v[0] != messageFormat {
				t.Errorf("%s was written back as %.20q, not compact", m.ID, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := q.Summarize(time.Time{}); err != nil || sum.Damaged != 0 {
		t.Errorf("Summarize = %+v, %v", sum, err)
	}
}

func gunzip(t *testing.T, from, to string) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, z); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeMessage: whatever the bytes, decodeMessage never panics, and
// a record it accepts is stored again (compact) as the same message.
func FuzzDecodeMessage(f *testing.F) {
	typical, full := recordSamples()
	for _, m := range []*Message{typical, full} {
		v, _ := encodeMessage(m)
		f.Add(v)
		j, _ := json.Marshal(m)
		f.Add(j)
	}
	f.Add([]byte{messageFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMessage(v)
		if err != nil || v[0] == '{' {
			return
		}
		again, err := encodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeMessage(again)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded as\n%+v\nwant\n%+v", m2, m)
		}
	})
}

// BenchmarkMessageRecord is the cost of storing and reading back a
// typical record, as Put, Lease and Record do, compact against the JSON
// it replaced.
func BenchmarkMessageRecord(b *testing.B) {
	typical, _ := recordSamples()
	for _, form := range []struct {
		name   string
		encode func(*Message) ([]byte, error)
	}{
		{"compact", encodeMessage},
		{"json", func(m *Message) ([]byte, error) { return json.Marshal(m) }},
	} {
		b.Run(form.name, func(b *testing.B) {
			for b.Loop() {
				v, err := form.encode(typical)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := decodeMessage(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestFormatVersionKeepsOlderRelayqsOut: a new file and a file of an
// older format (1: JSON only; 2: a tally per message) are marked version 3
// at Open (an older relayq refuses to open it rather than take every
// compact record for damage or get its counts wrong); a version this
// relayq does not know is refused.
func TestFormatVersionKeepsOlderRelayqsOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	reopen := func(stored string) (string, error) {
		t.Helper()
		q, err := Open(path, Options{})
		if err != nil {
			return "", err
		}
		defer q.Close()
		var v string
		err = q.db.Update(func(tx *boltTx) error {
			meta := tx.Bucket(bucketMeta)
			v = string(meta.Get(keyVersion))
			if stored == "" {
				return nil
			}
			return meta.Put(keyVersion, []byte(stored))
		})
		return v, err
	}
	if v, err := reopen("1"); err != nil || v != "3" {
		t.Errorf("a new file is version %q (%v), want 3", v, err)
	}
	if v, err := reopen("2"); err != nil || v != "3" {
		t.Errorf("a file of version 1 is version %q after Open (%v), want 3", v, err)
	}
	if v, err := reopen("4"); err != nil || v != "3" {
		t.Errorf("a file of version 2 is version %q after Open (%v), want 3", v, err)
	}
	if _, err := reopen(""); err == nil || !strings.Contains(err.Error(), `unknown queue format version "4"`) {
		t.Errorf("a file of version 4 opened: %v", err)
	}
}
