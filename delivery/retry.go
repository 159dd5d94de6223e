package delivery

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryPolicy says when to try a deferred recipient again and when to give up.
// Zero fields take Postfix-like defaults.
type RetryPolicy struct {
	InitialInterval time.Duration // first retry after this; default 5m
	Multiplier      float64       // each retry waits this much longer; default 2
	MaxInterval     time.Duration // cap on the wait; default 1h
	MaxLifetime     time.Duration // a message older than this at a failed attempt is dead-lettered; default 120h
	Jitter          float64       // ± fraction of randomness in each wait; default 0.2
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.InitialInterval <= 0 {
		p.InitialInterval = 5 * time.Minute
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = time.Hour
	}
	if p.MaxInterval < p.InitialInterval {
		p.MaxInterval = p.InitialInterval
	}
	if p.MaxLifetime <= 0 {
		p.MaxLifetime = 120 * time.Hour
	}
	if p.Jitter <= 0 || p.Jitter >= 1 {
		p.Jitter = 0.2
	}
	return p
}

// Delay is how long to wait after the given failed attempt (1 for the first
// failure). It depends only on the attempt number, which the queue stores, so
// a restart continues the sequence instead of starting over.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
		MaxElapsedTime:      0, // lifetime is ours to decide, from the stored creation time
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	var d time.Duration
	// After enough steps the interval sits at MaxInterval; stop counting there.
	for i := 0; i < min(max(attempt, 1), 100); i++ {
		d = b.NextBackOff()
	}
	return d
}
