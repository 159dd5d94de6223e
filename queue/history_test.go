package queue

import (
	"strings"
	"testing"
)

// TestTranscriptOfTheLastAttemptOnly: each attempt's transcript replaces
// the one before, so the stored record holds one at most; the dead letter's
// copy of the record keeps the transcript of the attempt that killed the
// message; one beyond the limit is cut.
func TestTranscriptOfTheLastAttemptOnly(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := put(t, q, "Subject: t\r\n\r\nbody\r\n", "a@example.com")
	attempt := func(transcript string, result Result, reply *Reply) {
		t.Helper()
		l := leaseOne(t, q)
		o := Outcome{Address: "a@example.com", Result: result, Reply: reply, NextAttempt: clk.Now()}
		if _, err := q.RecordAttempt(l, Attempt{Relay: "smtp://relay:25", Transcript: transcript}, []Outcome{o}); err != nil {
			t.Fatal(err)
		}
	}
	attempt("S: 421 4.3.2 first", Deferred, &Reply{Code: 421, Enhanced: "4.3.2"})
	attempt("S: 451 4.3.0 second", Deferred, &Reply{Code: 451, Enhanced: "4.3.0"})
	m, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.History) != 2 || m.History[0].Transcript != "" || m.History[1].Transcript != "S: 451 4.3.0 second" {
		t.Fatalf("history transcripts %q, want only the second attempt's", transcripts(m.History))
	}

	long := "C: DATA\n" + strings.Repeat("S: 550-5.7.1 a very long refusal\n", 1000)
	attempt(long, Failed, &Reply{Code: 550, Enhanced: "5.7.1"})
	d, err := q.GetDead(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Record == nil || len(d.Record.History) != 3 {
		t.Fatalf("dead letter record %+v, want the history of 3 attempts", d.Record)
	}
	got := d.Record.History[2].Transcript
	if !strings.HasPrefix(got, "C: DATA\nS: 550-5.7.1") || len(got) > maxTranscript+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("dead letter keeps a transcript of %d bytes starting %.30q, want the last one cut at %d with a mark", len(got), got, maxTranscript)
	}
	if d.Record.History[1].Transcript != "" {
		t.Errorf("dead letter keeps an older transcript too: %q", transcripts(d.Record.History))
	}
}

func transcripts(h []Attempt) []string {
	var out []string
	for _, a := range h {
		out = append(out, a.Transcript)
	}
	return out
}
