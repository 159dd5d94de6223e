package delivery

import (
	"testing"
	"time"
)

func TestDelayGrowsToTheCapWithinJitter(t *testing.T) {
	p := RetryPolicy{InitialInterval: 5 * time.Minute, Multiplier: 2, MaxInterval: time.Hour, Jitter: 0.2}.withDefaults()
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour}
	for attempt := 1; attempt <= 30; attempt++ {
		base := time.Hour
		if attempt <= len(want) {
			base = want[attempt-1]
		}
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		for range 20 {
			if d := p.Delay(attempt); d < lo || d > hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", attempt, d, lo, hi)
			}
		}
	}
}

func TestRetryDefaultsAreLikePostfix(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	if p.InitialInterval != 5*time.Minute || p.Multiplier != 2 || p.MaxInterval != time.Hour || p.MaxLifetime != 120*time.Hour {
		t.Fatalf("defaults %+v", p)
	}
}

// TestRelayPauseCountsOneOutageOnce: the attempts under way when the
// relay went down (every worker's) fail together; the first starts the
// pause, the others leave it as it is; only a failed probe doubles it.
func TestRelayPauseCountsOneOutageOnce(t *testing.T) {
	p := newRelayPause(time.Second, 5*time.Minute)
	now := time.Now()
	if got, changed := p.failed(now, false); got != time.Second || !changed {
		t.Fatalf("first failure: pause %v (changed %v), want 1s", got, changed)
	}
	for range 31 {
		if got, changed := p.failed(now, false); got != time.Second || changed {
			t.Fatalf("failure of an attempt under way: pause %v (changed %v), want 1s unchanged", got, changed)
		}
	}
	if got, changed := p.failed(now.Add(time.Second), true); got != 2*time.Second || !changed {
		t.Fatalf("failed probe: pause %v (changed %v), want 2s", got, changed)
	}
}

func TestRelayPauseDoublesAndEndsOnSuccess(t *testing.T) {
	p := newRelayPause(time.Second, 4*time.Second)
	now := time.Now()
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if got, _ := p.failed(now, true); got != want {
			t.Fatalf("pause %v, want %v", got, want)
		}
	}
	if p.remaining(now) != 4*time.Second {
		t.Fatalf("remaining %v", p.remaining(now))
	}
	if !p.succeeded() || p.remaining(now) > 0 {
		t.Fatal("success did not end the pause")
	}
}
