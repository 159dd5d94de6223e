package spool

import "testing"

func TestQueuedID(t *testing.T) {
	for reply, want := range map[string]string{
		"Ok: queued as 1HTT46PG0000":     "1HTT46PG0000",
		"Ok: queued as 1HTT46PG0000 (x)": "1HTT46PG0000",
		"Ok: queued as\t1HTT46PG0000":    "",
		"Ok: queued as ":                 "",
		"Ok":                             "",
		"2.0.0 queued as ABC\tthank you": "ABC",
	} {
		if got := queuedID(reply); got != want {
			t.Errorf("queuedID(%q) = %q, want %q", reply, got, want)
		}
	}
}
