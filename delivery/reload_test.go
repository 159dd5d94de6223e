package delivery

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"relayq/transport"
	"relayq/transport/smtptest"
)

// A reload swaps the relay while an attempt is in flight (relay A is slow
// to answer the dot): that attempt finishes on A and is delivered once;
// the next message goes to B, logged under B's name.
func TestSetRelayLetsAttemptsInFlightFinish(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{{Delay: 500 * time.Millisecond}},
	}}, RetryPolicy{}, 0)
	r.put(t, "Subject: one\r\n\r\nx\r\n", "a@there.example")
	waitFor(t, "the attempt on A to start", func() bool { return r.relay.DataAttempts() == 1 })

	b := smtptest.NewServer(t, smtptest.Options{})
	tb := transport.New(transport.Options{Network: b.Network(), Address: b.Addr(), IgnoreTLS: true,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil))})
	t.Cleanup(func() { tb.Close() })
	r.d.SetRelay(Relay{Transport: tb, Name: "relay-b", Retry: RetryPolicy{InitialInterval: 30 * time.Millisecond, MaxLifetime: time.Hour}})
	r.put(t, "Subject: two\r\n\r\ny\r\n", "b@there.example")

	if got := r.relay.WaitMessages(t, 1, 10*time.Second); !strings.Contains(string(got[0].Body), "one") {
		t.Errorf("relay A got %q, want the first message", got[0].Body)
	}
	if got := b.WaitMessages(t, 1, 10*time.Second); !strings.Contains(string(got[0].Body), "two") {
		t.Errorf("relay B got %q, want the second message", got[0].Body)
	}
	r.emptied(t)
	if n := len(r.relay.Messages()); n != 1 {
		t.Errorf("relay A got %d messages, want 1", n)
	}
	if c, _ := r.q.Count(); c.Dead != 0 {
		t.Errorf("dead letters: %d", c.Dead)
	}
	if !strings.Contains(r.logs.String(), "relay=relay-b") || r.d.RelayStatus().Relay != "relay-b" {
		t.Errorf("the second delivery is not logged under relay-b:\n%s", r.logs.String())
	}
	if r.d.Transport() != tb {
		t.Errorf("Transport() is not the new transport")
	}
}

// A relay that fails its sessions (421 greetings) has paused deliveries;
// a reload that names another relay (or fixes the credentials) ends the
// pause at once: the next message is a probe to the new relay, not held
// until the old relay's pause runs out.
func TestSetRelayEndsPause(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(1000, smtptest.Reply(421, "4.3.2 shutting down")),
	}}, RetryPolicy{InitialInterval: time.Hour, MaxLifetime: 5 * time.Hour}, 0)
	r.put(t, "x\r\n", "a@there.example")
	waitFor(t, "the relay to be paused", func() bool { return r.d.pauseOf(DefaultRelay).remaining(time.Now()) > 0 })

	b := smtptest.NewServer(t, smtptest.Options{})
	tb := transport.New(transport.Options{Network: b.Network(), Address: b.Addr(), IgnoreTLS: true})
	t.Cleanup(func() { tb.Close() })
	r.d.SetRelay(Relay{Transport: tb, Name: "relay-b", Retry: RetryPolicy{InitialInterval: time.Hour, MaxLifetime: 5 * time.Hour}})
	if wait := r.d.pauseOf(DefaultRelay).remaining(time.Now()); wait > 0 {
		t.Errorf("after SetRelay the old relay's pause still has %v to run", wait)
	}
	r.put(t, "y\r\n", "b@there.example")
	b.WaitMessages(t, 1, 10*time.Second)
}
