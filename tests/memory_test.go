package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// TestMemoryBudgetBurst: 20 SMTP clients at once on the unix socket, all as
// the test's uid → relayq with submission.max_memory "4MiB" and
// max_message_size "2MiB" → smtptest relay. Each sends 1.5 MiB: the first
// 1 MiB, then, once every client has sent that, the rest. Without the
// budget the daemon would hold all 20 messages at once (30 MiB of bodies,
// each several times over while it stamps and commits them); with it, its
// peak resident set stays under 60 MiB. Every message is answered 250 or
// 452 4.3.1 after its final dot; each 250'd one reaches the relay whole,
// no refused one does, and the daemon takes mail as before. relayq status
// shows the budget.
func TestMemoryBudgetBurst(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_memory", `"4MiB"`)
		s.set("submission", "max_message_size", `"2MiB"`)
	})
	pid := d.running().cmd.Process.Pid
	before := peakRSS(t, pid)
	const clients = 20
	from, to := "burst@example.org", []string{"rcpt@example.net"}
	msgs := make([][]byte, clients)
	for i := range msgs {
		msgs[i] = newMessage(i+1, from, to, 26500)
	}
	t.Logf("messages of %.2f MiB", float64(len(msgs[0]))/(1<<20))

	var half sync.WaitGroup // every client has sent its first part
	half.Add(clients)
	replies := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = sendInTwo(d.submitSocket(), from, to, msgs[i], 1<<20, &half)
		}()
	}
	wg.Wait()
	peak := peakRSS(t, pid)
	t.Logf("daemon peak RSS %d MiB before the burst, %d MiB after", before>>20, peak>>20)

	acked, refused := map[int][]byte{}, map[int]bool{}
	for i, err := range replies {
		var reply *smtp.SMTPError
		switch {
		case err == nil:
			acked[i+1] = msgs[i]
		case errors.As(err, &reply) && reply.Code == 452 && reply.EnhancedCode == (smtp.EnhancedCode{4, 3, 1}):
			refused[i+1] = true
		default:
			t.Errorf("client %d: %v, want 250 or 452 4.3.1 after the data", i+1, err)
		}
	}
	t.Logf("%d accepted, %d refused", len(acked), len(refused))
	if len(acked) == 0 {
		t.Errorf("no message accepted")
	}
	if peak > 60<<20 {
		t.Errorf("daemon peak RSS %d MiB, want under 60 MiB with max_memory 4 MiB", peak>>20)
	}
	checkAllDelivered(t, relay, acked, refused, 60*time.Second)
	if n := len(d.logRecords("message refused: intake memory budget full")); len(refused) > 0 && n != 1 {
		t.Errorf("%d refusals logged for %d refused messages, want 1 (once a minute per uid)", n, len(refused))
	}
	// relayq status shows the budget, with nothing held once all is
	// answered.
	var st struct {
		Memory *struct {
			InFlight *int64 `json:"in_flight"`
			Max      int64  `json:"max"`
		} `json:"memory"`
	}
	res := d.mustRelayq(t, "status", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Memory == nil || st.Memory.InFlight == nil ||
		*st.Memory.InFlight != 0 || st.Memory.Max != 4<<20 {
		t.Errorf("status --json memory: %+v (%v), want 0 in flight of 4 MiB:\n%s", st.Memory, err, res.stdout)
	}
	if text := d.mustRelayq(t, "status").stdout; !strings.Contains(text, "Memory:       0 bytes of 4.0 MiB in message bodies being received") {
		t.Errorf("status: no line for the memory budget:\n%s", text)
	}
	d.waitQueueEmpty(t, 30*time.Second)
	stillServing(t, d, relay, clients+1)
}

// sendInTwo sends one message over relayq's unix socket at path: the
// first n bytes of body, then, after every client has done so (half), the
// rest. It returns nil for 250 and the reply (*smtp.SMTPError) or the
// failure otherwise. It touches no testing.TB, so goroutines may call it.
func sendInTwo(path, from string, to []string, body []byte, n int, half *sync.WaitGroup) (err error) {
	halfDone := false
	defer func() {
		if !halfDone {
			half.Done()
		}
	}()
	c, err := envelopeSMTP("unix", path, 2*time.Minute, from, to)
	if err != nil {
		return err
	}
	defer c.Close()
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body[:n]); err != nil {
		return fmt.Errorf("DATA, first part: %w", err)
	}
	halfDone = true
	half.Done()
	half.Wait()
	if _, err := w.Write(body[n:]); err != nil {
		return fmt.Errorf("DATA, second part: %w", err)
	}
	if err := w.Close(); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}
