package spool

import (
	"testing"
	"time"
)

// A deadline is passed on to the connection when it is the first, when it
// is cleared or brought forward, and when it moves later by more than
// 1/64 of the time left until it; go-smtp's deadline a whole timeout from
// now, set again a moment later, is not.
func TestDeadlineMoves(t *testing.T) {
	now := time.Now()
	at := now.Add(10 * time.Minute)
	for _, c := range []struct {
		name string
		in   time.Time // in force
		t    time.Time
		want bool
	}{
		{"first", time.Time{}, at, true},
		{"cleared", at, time.Time{}, true},
		{"the same", at, at, false},
		{"a moment later (the next command)", at, at.Add(time.Second), false},
		{"earlier (idle timeout outside a transaction)", at, at.Add(-time.Second), true},
		{"later by more than 1/64 of what is left", at, at.Add(20 * time.Second), true},
		{"short timeout, a moment later", now.Add(200 * time.Millisecond), now.Add(210 * time.Millisecond), true},
	} {
		d := deadline{at: c.in}
		if got := d.moves(c.t); got != c.want {
			t.Errorf("%s: moves = %v, want %v", c.name, got, c.want)
		}
		if want := c.in; c.want {
			want = c.t
			if !d.at.Equal(want) {
				t.Errorf("%s: in force %v, want %v", c.name, d.at, want)
			}
		} else if !d.at.Equal(want) {
			t.Errorf("%s: in force %v, want %v (unchanged)", c.name, d.at, want)
		}
	}
}
