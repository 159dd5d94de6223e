package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestDSNKeptWithMessage: the submission's RET, ENVID and per-recipient
// NOTIFY/ORCPT come back with the leased message, each recipient with its
// own, and survive a reopen of the store.
func TestDSNKeptWithMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := Envelope{
		From:       "cron@example.org",
		Recipients: []string{"a@example.com", "b@example.com"},
		DSN:        DSN{Return: "HDRS", EnvelopeID: "QQ314159"},
		RecipientDSN: []RecipientDSN{
			{Notify: []string{"SUCCESS", "FAILURE"}, OrigType: "RFC822", Orig: "alias@example.com"},
			{Notify: []string{"NEVER"}},
		},
	}
	id, err := q.Put(context.Background(), env, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	q, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range q.Check() {
			t.Errorf("integrity: %v", p)
		}
		q.Close()
	}()
	l := leaseOne(t, q)
	if l.ID != id || l.DSN != env.DSN {
		t.Fatalf("leased %s with DSN %+v, want %s with %+v", l.ID, l.DSN, id, env.DSN)
	}
	for i, r := range l.Recipients {
		if !reflect.DeepEqual(r.DSN, env.RecipientDSN[i]) {
			t.Errorf("recipient %s: DSN %+v, want %+v", r.Address, r.DSN, env.RecipientDSN[i])
		}
	}
}

// TestDSNOldRecordReadable: a record written before DSN was kept (no dsn
// keys) still loads, with no DSN request; a record without any DSN writes
// no dsn keys.
func TestDSNOldRecordReadable(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "Subject: x\r\n\r\nx\r\n", "a@example.com")
	err := q.db.Update(func(tx *bolt.Tx) error {
		// Older relayqs wrote records as JSON (message_record.go).
		rec := jsonRecord(t, tx.Bucket(bucketMessages).Get([]byte(id)))
		if bytes.Contains(rec, []byte(`"dsn"`)) {
			t.Errorf("record without DSN encodes a dsn key: %s", rec)
		}
		// What an older relayq wrote for a submission with DSN: no dsn keys.
		var m map[string]any
		if err := json.Unmarshal(rec, &m); err != nil {
			return err
		}
		m["smtputf8"] = false
		old, _ := json.Marshal(m)
		return tx.Bucket(bucketMessages).Put([]byte(id), old)
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.Get(id)
	if err != nil {
		t.Fatalf("old record: %v", err)
	}
	if m.DSN != (DSN{}) || !m.Recipients[0].DSN.IsZero() {
		t.Errorf("old record read with DSN %+v / %+v, want none", m.DSN, m.Recipients[0].DSN)
	}
}

func TestDSNMismatchedRecipients(t *testing.T) {
	q, _ := openTest(t, Options{})
	env := Envelope{Recipients: []string{"a@example.com", "b@example.com"}, RecipientDSN: []RecipientDSN{{Notify: []string{"NEVER"}}}}
	if _, err := q.Put(context.Background(), env, []byte("x\r\n")); err == nil {
		t.Fatal("Put took 1 recipient DSN for 2 recipients")
	}
}
