package tests

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// sent is one message a test submitted, as the relay should receive it.
type sent struct {
	seq  int
	from string
	to   []string
	body []byte
}

// TestBulkDelivery: sendmail (100 execs) and SMTP on the unix socket (100
// connections), concurrently → relayq → smtptest relay. Every message
// arrives once, byte for byte, with its envelope.
func TestBulkDelivery(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)

	const perPath = 100
	var msgs []sent
	for seq := range 2 * perPath {
		from := fmt.Sprintf("sender%d@example.org", seq)
		to := []string{fmt.Sprintf("rcpt%d@example.net", seq)}
		for i := range seq % 3 {
			to = append(to, fmt.Sprintf("cc%d-%d@example.com", seq, i))
		}
		msgs = append(msgs, sent{seq: seq, from: from, to: to, body: newMessage(seq, from, to, 5+seq%40)})
	}

	errs := make(chan error, len(msgs))
	var wg sync.WaitGroup
	work := make(chan sent)
	for range 16 {
		wg.Go(func() {
			for m := range work {
				errs <- submitOne(d, m, m.seq%2 == 0)
			}
		})
	}
	for _, m := range msgs {
		work <- m
	}
	close(work)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed++; failed <= 5 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d submissions failed", failed, len(msgs))
	}

	got := relay.WaitMessages(t, len(msgs), 60*time.Second)
	checkReceived(t, msgs, got)
	d.waitQueueEmpty(t, 10*time.Second)
	if n := len(relay.Messages()); n != len(msgs) {
		t.Errorf("relay received %d transactions, want %d (duplicates)", n, len(msgs))
	}
}

// submitOne submits m through `relayq sendmail` (viaSendmail) or SMTP on the
// unix socket, and reports a failure as an error: it runs on a goroutine.
func submitOne(d *daemon, m sent, viaSendmail bool) error {
	if viaSendmail {
		args := append([]string{"-i", "-f", m.from}, m.to...)
		if res := d.sendmail(m.body, args...); res.code != 0 {
			return fmt.Errorf("message %d: sendmail: %v", m.seq, res)
		}
		return nil
	}
	if _, err := submitSMTP("unix", d.submitSocket(), m.from, m.to, m.body); err != nil {
		return fmt.Errorf("message %d: SMTP on the socket: %v", m.seq, err)
	}
	return nil
}

// checkReceived asserts that the relay got each message of want exactly
// once, with the same bytes, sender and recipients.
func checkReceived(t *testing.T, want []sent, got []smtptest.Received) {
	t.Helper()
	bySeq := map[int][]smtptest.Received{}
	for _, r := range got {
		bySeq[seqOf(r.Body)] = append(bySeq[seqOf(r.Body)], r)
	}
	for _, m := range want {
		rs := bySeq[m.seq]
		if len(rs) != 1 {
			t.Errorf("message %d received %d times, want once", m.seq, len(rs))
			continue
		}
		r := rs[0]
		if !sameMessage(r.Body, m.body) {
			t.Errorf("message %d: body differs:\n got %q\nwant %q", m.seq, r.Body, m.body)
		}
		if r.From != m.from {
			t.Errorf("message %d: MAIL FROM %q, want %q", m.seq, r.From, m.from)
		}
		gotTo, wantTo := slices.Sorted(slices.Values(r.To)), slices.Sorted(slices.Values(m.to))
		if !slices.Equal(gotTo, wantTo) {
			t.Errorf("message %d: RCPT TO %q, want %q", m.seq, gotTo, wantTo)
		}
	}
	if n := len(bySeq[-1]); n > 0 {
		t.Errorf("relay received %d messages without X-Seq", n)
	}
}
