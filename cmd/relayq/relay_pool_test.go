package main

import (
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestRelayPoolKeys: [relay] pool, idle_timeout, idle_check, rate_limit and
// rate_delta (as keys or url options) reach the transport, and pool =
// false really means one connection per message.
func TestRelayPoolKeys(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	tr, o := relayFromConfig(t, "smtp://"+relay.Addr()+"?rate_limit=7&rate_delta=2s",
		"pool = false\nidle_timeout = \"40s\"\nidle_check = \"3s\"\n")
	if !o.NoPool || o.IdleTimeout != 40*time.Second || o.IdleCheck != 3*time.Second || o.RateLimit != 7 || o.RateDelta != 2*time.Second {
		t.Errorf("options NoPool %v IdleTimeout %v IdleCheck %v RateLimit %d RateDelta %v", o.NoPool, o.IdleTimeout, o.IdleCheck, o.RateLimit, o.RateDelta)
	}
	for range 2 {
		if err := sendOne(tr); err != nil {
			t.Fatal(err)
		}
	}
	if n := relay.Connections(); n != 2 {
		t.Errorf("pool = false: %d connections for 2 messages, want 2", n)
	}

	_, o = relayFromConfig(t, "smtp://"+relay.Addr(), "")
	if o.NoPool || o.RateLimit != 0 || o.IdleTimeout != 30*time.Second || o.IdleCheck != 5*time.Second {
		t.Errorf("defaults: NoPool %v RateLimit %d IdleTimeout %v IdleCheck %v; want a pool, no limit, 30s, 5s", o.NoPool, o.RateLimit, o.IdleTimeout, o.IdleCheck)
	}
}
