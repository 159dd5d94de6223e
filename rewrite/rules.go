package rewrite

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Errors a caller can test for with errors.Is.
var (
	// ErrUnknown is a local recipient that no alias names, when
	// Options.RefuseUnknown is set (intake answers 550 5.1.1).
	ErrUnknown = errors.New("rewrite: unknown local recipient")
	// ErrLoop is an alias that leads back to itself.
	ErrLoop = errors.New("rewrite: alias loop")
)

// When says to which senders a sender rule applies.
type When string

const (
	// Local senders only: an address without a domain or at one of this
	// host's names (Options.LocalDomains), as cron's and daemons' mail is.
	// The zero value means Local.
	Local When = "local"
	// Always: every sender but the null sender <>.
	Always When = "always"
)

// Options are the rules. The zero value changes nothing but leaves
// addresses without a domain as they are.
type Options struct {
	// Domain is given to an address without a domain and to one at a
	// local domain: "root" and "root@vm" become "root@Domain" (Postfix's
	// myorigin). "" leaves them as they are.
	Domain string
	// LocalDomains are this host's own names (its host name, short and
	// fully qualified): an address there is local, like one without a
	// domain. "localhost" always is. Compared without case.
	LocalDomains []string
	// Aliases map a local part (compared without case) to its targets,
	// each an address or another local name, expanded recursively.
	Aliases map[string][]string
	// AdminAddress, if set, receives every local recipient that no alias
	// names (nullmailer's adminaddr).
	AdminAddress string
	// RefuseUnknown refuses a local recipient that no alias names (when
	// AdminAddress is ""), with ErrUnknown, instead of qualifying it.
	RefuseUnknown bool
	// Masquerade domains: a sender at a host below one of them loses the
	// host part ("user@host.example.com" → "user@example.com").
	Masquerade []string
	// EnvelopeFrom replaces the envelope sender (MAIL FROM) of the
	// senders EnvelopeFromWhen says; "" keeps it.
	EnvelopeFrom     string
	EnvelopeFromWhen When
	// FromHeader replaces the address in the From field, keeping its
	// display name, for the senders FromHeaderWhen says; "" keeps it.
	// With FromToReplyTo the address it replaced goes into a Reply-To
	// field, unless the message has one.
	FromHeader     string
	FromHeaderWhen When
	FromToReplyTo  bool
	// Defaults are header fields added to a message that has no field of
	// that name (the message's own field wins), in this order.
	Defaults []Field
}

// Field is one header field.
type Field struct{ Name, Value string }

// Rules applies Options. It is safe for concurrent use.
type Rules struct {
	opts    Options
	local   map[string]bool
	aliases map[string][]string
}

// maxDepth bounds alias expansion, as Postfix's (and sendmail's) limit.
const maxDepth = 20

// New checks the options (every alias must expand without a loop) and
// returns the rules.
func New(o Options) (*Rules, error) {
	r := &Rules{opts: o, local: map[string]bool{"localhost": true}, aliases: make(map[string][]string)}
	for _, d := range o.LocalDomains {
		if d != "" {
			r.local[strings.ToLower(d)] = true
		}
	}
	for k, v := range o.Aliases {
		r.aliases[strings.ToLower(k)] = v
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(r.aliases)) {
		if _, err := r.expand(k, nil); err != nil && !errors.Is(err, ErrUnknown) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Recipient maps one envelope recipient to the addresses the message goes
// to: a recipient at another domain is kept; a local one ("root",
// "root@vm") is expanded through the aliases, else sent to AdminAddress,
// else refused (RefuseUnknown) or qualified with Domain. The result has no
// duplicates.
func (r *Rules) Recipient(addr string) ([]string, error) {
	out, err := r.expand(addr, nil)
	if err != nil {
		return nil, err
	}
	return dedupe(out), nil
}

func (r *Rules) expand(addr string, chain []string) ([]string, error) {
	if !r.isLocal(addr) {
		return []string{addr}, nil
	}
	l, _ := splitAddr(addr)
	key := strings.ToLower(l)
	targets, ok := r.aliases[key]
	if !ok {
		switch {
		case r.opts.AdminAddress != "":
			return []string{r.opts.AdminAddress}, nil
		case r.opts.RefuseUnknown:
			return nil, fmt.Errorf("%w: %s", ErrUnknown, addr)
		}
		return []string{r.qualify(addr)}, nil
	}
	chain = append(chain, key)
	if slices.Contains(chain[:len(chain)-1], key) || len(chain) > maxDepth {
		return nil, fmt.Errorf("%w: %s", ErrLoop, strings.Join(chain, " → "))
	}
	var out []string
	for _, t := range targets {
		got, err := r.expand(t, chain)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// Sender is the envelope sender as it will be sent: EnvelopeFrom when its
// rule applies, else the sender qualified and masqueraded. The null sender
// stays null (a bounce must not be answered).
func (r *Rules) Sender(from string) string {
	if from == "" {
		return ""
	}
	if r.opts.EnvelopeFrom != "" && r.applies(r.opts.EnvelopeFromWhen, from) {
		return r.opts.EnvelopeFrom
	}
	return r.masquerade(r.qualify(from))
}

func (r *Rules) applies(w When, addr string) bool {
	return w == Always || r.isLocal(addr)
}

// dedupe keeps the first of addresses that differ only in the case of
// their domain.
func dedupe(addrs []string) []string {
	seen := make(map[string]bool, len(addrs))
	out := addrs[:0:0]
	for _, a := range addrs {
		l, d := splitAddr(a)
		k := l + "@" + strings.ToLower(d)
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}
