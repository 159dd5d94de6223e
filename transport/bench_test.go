package transport

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// BenchmarkSend measures one 5 KB message through Send on a warm pooled
// connection (MAIL, RCPT, DATA, no dial, no EHLO), against a new connection
// per message (NoPool) for comparison, with 1 and 4 senders sharing the
// pool as delivery workers do, and to a relay that offers CHUNKING (MAIL,
// RCPT, BDAT and the message in one write: chunking.go), and with 32
// senders on the default 5 connections as delivery's workers share them.
// The smtptest server runs in the same process and keeps what it receives,
// so B/op and allocs/op include its share; the difference between the rows
// is the client's. wakes/msg counts the times a Send waiting for a
// connection was woken to look again. Run with:
//
//	go test -run '^$' -bench Send -benchmem ./transport
func BenchmarkSend(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\r\n"), 5120/74)
	for _, bc := range []struct {
		name     string
		noPool   bool
		senders  int
		chunking bool
	}{
		{"pool/senders=1", false, 1, false},
		{"pool/senders=4", false, 4, false},
		{"nopool/senders=1", true, 1, false},
		{"pool/senders=1/chunking", false, 1, true},
		// delivery's defaults: 32 workers share 5 connections, so most
		// Sends wait for one (pool.go: a freed connection wakes one)
		{"pool/senders=32/chunking", false, 32, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := smtptest.NewServer(b, smtptest.Options{Chunking: bc.chunking})
			tr := New(Options{
				Address:     srv.Addr(),
				LocalName:   localName,
				IgnoreTLS:   true,
				NoPool:      bc.noPool,
				MaxMessages: 1 << 30, // a warm connection for the whole run
				// MaxConnections: the default (5)
			})
			b.Cleanup(func() { tr.Close() })
			send := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				res, err := tr.Send(ctx, &Message{From: "a@example.org", Recipients: []string{"b@example.org"},
					Body: bytes.NewReader(body), Size: int64(len(body))})
				if err == nil && res.Recipients[0].Err != nil {
					err = res.Recipients[0].Err
				}
				return err
			}
			for range bc.senders { // warm: the pool's connections are open
				if err := send(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start, woken := time.Now(), tr.woken.Load()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range bc.senders {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := send(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64(tr.woken.Load()-woken)/float64(b.N), "wakes/msg")
			if got := srv.Connections(); !bc.noPool && got > min(bc.senders, tr.opts.MaxConnections) {
				b.Errorf("%d connections opened for %d senders: the pool did not keep them warm", got, bc.senders)
			}
		})
	}
}
