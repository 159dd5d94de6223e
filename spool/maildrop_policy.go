package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// What the maildrop import does with a file it cannot queue now, and the
// intake policy it applies, so that a maildrop file gets exactly what the
// same user's submission on the socket would:
//
//   - more recipients than max_recipients, a body over max_message_size,
//     or a message larger than its owner's whole queued_bytes: refused for
//     good, which for a file sendmail already reported as sent means set
//     aside (*.bad) with a log line naming the reason;
//   - over messages_per_hour or queued_bytes: the file waits, claimed, and
//     is tried again later; it does not count as a failure;
//   - the queue cannot take it (full, storage error): it is tried again
//     later; after maildropMaxFailures failures over at least
//     maildropFailureSpan it is set aside, so that a queue that stays
//     unable to take one file does not retry it forever;
//   - in every case the other files go on being imported.
//
// A file intake wrote while the queue was not open (maildrop_intake.go)
// gets the same, under the submitter its intake line names: over
// messages_per_hour or queued_bytes it waits, larger than that
// submitter's whole queued_bytes it is set aside. That is where [limits]
// apply to a message taken while relayq starts (starting.go).
//
// The retry state is kept in memory: a restart tries every file at once.

const (
	maildropMaxFailures = 10
	maildropFailureSpan = time.Hour
	maildropRetryMax    = 5 * time.Minute // longest wait between tries of a file
	maildropLogInterval = time.Minute     // an identical failure is logged this often
)

// dropRetry is a file the import could not queue yet.
type dropRetry struct {
	failures int       // Puts that failed
	tries    int       // failures and limit waits
	first    time.Time // of the first failure
	next     time.Time // not tried before then
}

func (m *Maildrop) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

// due reports whether the file named base may be tried now.
func (m *Maildrop) due(base string) bool {
	w := m.waiting[base]
	return w == nil || !m.clock().Before(w.next)
}

// retryLater records that base (claimed as work) could not be queued, why,
// and whether that counts as a failure of the file (the queue refused it)
// or is a wait (its owner is over a limit). It sets aside a file that has
// failed too often for too long.
func (m *Maildrop) retryLater(base, work string, why error, failure bool) {
	now := m.clock()
	if m.waiting == nil {
		m.waiting = make(map[string]*dropRetry)
	}
	w := m.waiting[base]
	if w == nil {
		w = &dropRetry{}
		m.waiting[base] = w
	}
	w.tries++
	if failure {
		if w.failures == 0 {
			w.first = now
		}
		w.failures++
		if w.failures >= maildropMaxFailures && now.Sub(w.first) >= maildropFailureSpan {
			m.setAside(base, work, fmt.Errorf("could not be queued %d times since %s: %w", w.failures, w.first.Format(time.RFC3339), why))
			return
		}
	}
	w.next = now.Add(min(time.Second<<min(w.tries-1, 16), maildropRetryMax))
	msg := "maildrop: cannot queue file now; will retry"
	if !failure {
		msg = "maildrop: file over its owner's limits; will retry"
	}
	m.logRepeated(msg+" "+base, slog.LevelWarn, msg, "file", base, "failures", w.failures, "next", w.next.Format(time.RFC3339), "why", why)
}

// admitFile reads the claimed file base (at work) and applies the intake
// policy to it. If ok, the file may be queued and done must be called with
// the outcome of Put; if not, it has been set aside or will be tried again.
func (m *Maildrop) admitFile(base, work string) (env queue.Envelope, body []byte, origin *intakeOrigin, done func(queued bool), ok bool) {
	if over := m.overLimit(work); over != nil {
		// Known from the owner alone: no need to read the file.
		m.retryLater(base, work, errors.New(over.Message), false)
		return env, nil, nil, nil, false
	}
	env, body, origin, err := m.readFile(work)
	if err == nil {
		err = m.refused(env, body, origin)
	}
	if err != nil {
		m.setAside(base, work, err)
		return env, nil, nil, nil, false
	}
	done, over := m.admit(env, int64(len(body)))
	switch {
	case over != nil && over.Code >= 500: // larger than its owner's whole allowance
		m.setAside(base, work, errors.New(over.Message))
		return env, nil, nil, nil, false
	case over != nil:
		m.retryLater(base, work, errors.New(over.Message), false)
		return env, nil, nil, nil, false
	}
	return env, body, origin, done, true
}

// forgetGone drops the retry state of files no longer in the listing
// (removed by their owner, imported, set aside).
func (m *Maildrop) forgetGone(names []string) {
	if len(m.waiting) == 0 {
		return
	}
	listed := make(map[string]bool, len(names))
	for _, n := range names {
		listed[n] = true
	}
	for base := range m.waiting {
		if !listed[base] && !listed[base+maildropWork] {
			delete(m.waiting, base)
		}
	}
}

// refused returns why a file is refused for good by the intake policy, or
// nil. A file intake wrote while starting (origin set) was checked by its
// session already: its recipients are those RCPT mapped, aliases
// expanded, where max_recipients counts RCPT commands, as with the queue
// open; counted again here, a list alias set the acknowledged message
// aside.
func (m *Maildrop) refused(env queue.Envelope, body []byte, origin *intakeOrigin) error {
	s := m.Intake
	if s == nil {
		return nil
	}
	if max := s.opts.MaxRecipients; max > 0 && origin == nil && len(env.Recipients) > max {
		return fmt.Errorf("%d recipients, more than max_recipients %d", len(env.Recipients), max)
	}
	if max := s.opts.MaxMessageSize; max > 0 && int64(len(body)) > max {
		return fmt.Errorf("message of %d bytes, more than max_message_size %d", len(body), max)
	}
	return nil
}

// overLimit is the check intake makes at MAIL FROM, before the size is
// known, for the owner of the claimed file at work: a file whose owner is
// over messages_per_hour or queued_bytes already waits without being read.
func (m *Maildrop) overLimit(work string) *smtp.SMTPError {
	if m.Intake == nil || m.Intake.limits.Load() == nil {
		return nil
	}
	fi, err := os.Lstat(work)
	if err != nil {
		return nil // readFile will say
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := int(st.Uid)
	if uid == os.Geteuid() {
		// Perhaps intake's own file, whose submitter is inside: admit
		// checks it once the file is read.
		return nil
	}
	return m.Intake.limits.Load().check(queue.Submitter{UID: uid, Via: viaMaildrop, User: userName(uid)}, 0)
}

// admit applies the owner's [limits] as intake does at the end of DATA. A
// 5xx refusal (larger than the whole queued_bytes allowance) is for good.
func (m *Maildrop) admit(env queue.Envelope, size int64) (done func(queued bool), over *smtp.SMTPError) {
	if m.Intake == nil {
		return func(bool) {}, nil
	}
	return m.Intake.limits.Load().admit(env.Submitter, size)
}

// logRepeated logs an event that may repeat identically every pass (named
// by key) once per maildropLogInterval, with the count held back.
func (m *Maildrop) logRepeated(key string, level slog.Level, msg string, args ...any) {
	m.logs.interval = maildropLogInterval
	ok, held := m.logs.allow(key, m.clock())
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "repeated", held)
	}
	m.logger().Log(context.Background(), level, msg, args...)
}
