package delivery

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

// TestEventLogLine: a delivery line carries its stable keys, in order, as
// the operator greps them.
func TestEventLogLine(t *testing.T) {
	var out bytes.Buffer
	e := &eventLog{l: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "delay" {
				return slog.Attr{}
			}
			return a
		},
	}))}
	m := &queue.Message{ID: "ID1", From: "a@example.org", Attempts: 2, Created: time.Now()}
	o := queue.Outcome{Address: "b@example.net", Result: queue.Deferred, NextAttempt: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC),
		Reply: &queue.Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"try later"}}}
	e.attempt(m, "smtp://relay:25", o, true, 1500*time.Millisecond)
	want := `level=WARN msg=delivery id=ID1 from=a@example.org rcpt=b@example.net relay=smtp://relay:25 attempt=3 took=1.5s status=deferred reply="451 4.3.0 try later" next=2026-12-07T10:00:00Z possible_duplicate=true` + "\n"
	if got := out.String(); got != want {
		t.Errorf("logged\n%s\nwant\n%s", got, want)
	}
}

// TestEventLogOffFormatsNothing: with the level off, a delivery line costs
// no allocation at all: nothing is formatted.
func TestEventLogOffFormatsNothing(t *testing.T) {
	e := &eventLog{l: slog.New(slog.NewTextHandler(&strings.Builder{}, &slog.HandlerOptions{Level: slog.LevelError}))}
	m := &queue.Message{ID: "ID1", From: "a@example.org", Created: time.Now()}
	o := queue.Outcome{Address: "b@example.net", Result: queue.Delivered, Reply: &queue.Reply{Code: 250, Lines: []string{"ok"}}}
	if n := testing.AllocsPerRun(100, func() { e.attempt(m, "relay", o, false, time.Second) }); n != 0 {
		t.Errorf("%v allocations per line not logged, want 0", n)
	}
}
