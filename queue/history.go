package queue

import (
	"slices"
	"time"
	"unicode/utf8"
)

// Every recorded attempt adds an Attempt to its message's History, so that
// an operator can see why a message is stuck (`relayq queue show`). The
// history lives in the message record, which is rewritten at every lease and
// attempt, so it is kept small:
//
//   - at most maxHistory attempts, the latest ones;
//   - at most maxHistoryAddresses recipient addresses across them (a
//     message to a thousand recipients keeps fewer attempts), though the
//     latest attempt is always kept whole;
//   - recipients with the same result and reply share one AttemptResult,
//     so a session-level failure costs one reply, not one per recipient;
//   - a reply keeps at most maxHistoryLines lines of maxHistoryLineLen
//     bytes;
//   - only the latest attempt keeps its transcript (the SMTP exchange, which
//     delivery gets from the transport), of at most maxTranscript bytes:
//     appendHistory drops the older ones. The archive record of a message
//     that left the queue has none; a dead letter's copy of the record
//     keeps it.
const (
	maxHistory          = 50
	maxHistoryAddresses = 1000
	maxHistoryLines     = 8
	maxHistoryLineLen   = 512
	maxTranscript       = 16 << 10
)

// Attempt is one delivery attempt of a message in its history.
type Attempt struct {
	// Time is when the attempt started.
	Time time.Time `json:"time"`
	// Relay names the relay tried ("smtp://mail.example.com:587"), empty
	// when the caller did not say.
	Relay string `json:"relay,omitempty"`
	// Duration is how long the attempt took (connect to last reply).
	Duration time.Duration `json:"duration,omitempty"`
	// Results groups the recipients tried by what became of them.
	Results []AttemptResult `json:"results,omitempty"`
	// Transcript is the exchange with the relay, a line per command or
	// reply with credentials already redacted, as the caller gave it; kept
	// for the latest attempt of a message only.
	Transcript string `json:"transcript,omitempty"`
}

// AttemptResult is what one attempt did for some recipients: all of them
// got the same reply and ended in the same status (delivered, deferred or
// dead).
type AttemptResult struct {
	Recipients []string `json:"recipients"`
	Status     Status   `json:"status"`
	Reply      *Reply   `json:"reply,omitempty"`
}

// newAttempt builds the history entry for an attempt recorded at now. The
// caller's a supplies Relay and Duration (and Time, else now − Duration).
func newAttempt(a Attempt, outcomes []Outcome, now time.Time) Attempt {
	if a.Time.IsZero() {
		a.Time = now.Add(-a.Duration)
	}
	a.Transcript = clipText(a.Transcript, maxTranscript)
	a.Results = nil
	for _, o := range outcomes {
		status := resultStatus(o.Result)
		if o.Uncertain && status == StatusDeferred {
			status = StatusUncertain
		}
		reply := clipReply(o.Reply)
		i := slices.IndexFunc(a.Results, func(r AttemptResult) bool {
			return r.Status == status && sameReply(r.Reply, reply)
		})
		if i < 0 {
			a.Results = append(a.Results, AttemptResult{Status: status, Reply: reply})
			i = len(a.Results) - 1
		}
		a.Results[i].Recipients = append(a.Results[i].Recipients, o.Address)
	}
	return a
}

func resultStatus(r Result) Status {
	switch r {
	case Delivered:
		return StatusDelivered
	case Failed:
		return StatusDead
	default:
		return StatusDeferred
	}
}

// appendHistory adds a to h and drops the oldest attempts beyond the caps,
// and the transcripts of all but a.
func appendHistory(h []Attempt, a Attempt) []Attempt {
	h = append(h, a)
	addresses := 0
	keep := len(h)
	for i := len(h) - 1; i >= 0; i-- {
		addresses += h[i].addresses()
		if len(h)-i > maxHistory || (addresses > maxHistoryAddresses && i < len(h)-1) {
			break
		}
		keep = i
	}
	out := slices.Clone(h[keep:])
	for i := range out[:len(out)-1] {
		out[i].Transcript = ""
	}
	return out
}

func (a *Attempt) addresses() int {
	n := 0
	for _, r := range a.Results {
		n += len(r.Recipients)
	}
	return n
}

// clipReply returns a copy of r cut to the history's size limits.
func clipReply(r *Reply) *Reply {
	if r == nil {
		return nil
	}
	c := *r
	c.Lines = nil
	for i, line := range r.Lines {
		if i == maxHistoryLines {
			c.Lines = append(c.Lines, "…")
			break
		}
		c.Lines = append(c.Lines, clipText(line, maxHistoryLineLen))
	}
	return &c
}

// clipText cuts s to at most max bytes, on a character boundary, marking
// the cut with "…".
func clipText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func sameReply(a, b *Reply) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Code == b.Code && a.Enhanced == b.Enhanced && a.Stage == b.Stage && slices.Equal(a.Lines, b.Lines)
}
