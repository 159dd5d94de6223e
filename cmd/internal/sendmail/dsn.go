package sendmail

import (
	"fmt"
	"slices"
	"strings"

	"relayq/queue"
	"relayq/spool"
)

// dsnOption applies sendmail's DSN flags (as Postfix and Sendmail take
// them): -N never|success,delay,failure; -R full|hdrs; -V envid. Bad
// values are usage errors, found before anything is read or sent.
func (a *sendmailArgs) dsnOption(c byte, val string) error {
	switch c {
	case 'N':
		notify, err := parseNotify(val)
		if err != nil {
			return err
		}
		a.notify = notify
	case 'R':
		switch v := strings.ToUpper(val); v {
		case "FULL", "HDRS":
			a.dsn.Return = v
		default:
			return fmt.Errorf("-R %q: want full or hdrs", val)
		}
	case 'V':
		if len(val) > 100 || strings.ContainsFunc(val, func(r rune) bool { return r < ' ' || r > '~' }) {
			return fmt.Errorf("-V: the envelope ID must be at most 100 printable ASCII characters")
		}
		a.dsn.EnvelopeID = val
	}
	return nil
}

// parseNotify reads -N: "never", or a comma-separated list of success,
// delay and failure, each at most once.
func parseNotify(val string) ([]string, error) {
	var out []string
	for v := range strings.SplitSeq(val, ",") {
		v = strings.ToUpper(strings.TrimSpace(v))
		switch {
		case v == "NEVER" && !strings.Contains(val, ","):
		case v == "SUCCESS" || v == "DELAY" || v == "FAILURE":
			if slices.Contains(out, v) {
				return nil, fmt.Errorf("-N %q: %s given twice", val, strings.ToLower(v))
			}
		default:
			return nil, fmt.Errorf("-N %q: want never, or a list of success, delay and failure", val)
		}
		out = append(out, v)
	}
	return out, nil
}

// envelope is what sendmail submits: the prepared sender and recipients
// with the DSN request of -N, -R and -V.
func (a *sendmailArgs) envelope(p *spool.Prepared) queue.Envelope {
	env := queue.Envelope{From: p.From, Recipients: p.Recipients, DSN: a.dsn}
	if a.notify != nil {
		env.RecipientDSN = make([]queue.RecipientDSN, len(p.Recipients))
		for i := range env.RecipientDSN {
			env.RecipientDSN[i].Notify = a.notify
		}
	}
	return env
}
