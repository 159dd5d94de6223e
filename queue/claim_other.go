//go:build !linux

package queue

import (
	"os"
	"time"
)

// claimFile locks nothing outside Linux: open file description locks are
// Linux's, and a flock would conflict with bbolt's own. There the sockets
// a second relayq serve finds in use stop it instead.
func claimFile(path string, _ time.Duration) (*Claim, error) {
	return &Claim{path: path}, nil
}

func claimedElsewhere(*os.File) bool { return false }

// takeOver does nothing where claims lock nothing.
func (c *Claim) takeOver(string) error { return nil }
