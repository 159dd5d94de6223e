package queue

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestExpWalkAtMaxSize(t *testing.T) {
	q, _ := openTest(t, Options{MaxSize: 8 << 20})
	body := bytes.Repeat([]byte("x"), 2000)
	n := 0
	for {
		_, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, body)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	t.Logf("%d queued", n)
	for range 3 {
		tx0 := q.db.Stats().TxN
		start := time.Now()
		_, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, body)
		t.Logf("put: %v; read txs %d; %v", err, q.db.Stats().TxN-tx0, time.Since(start))
	}
}
