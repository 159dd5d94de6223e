// Package route decides which relays a recipient of a message goes to: an
// ordered table of rules, each matching the envelope sender and/or the
// recipient's domain and naming relays to try in order (failover). It is
// pure: a Table is built from plain Options and only answers Match; it
// knows nothing of the config file, the queue or SMTP. delivery asks it at
// each attempt, so a table swapped in by a reload applies to queued mail.
//
// A "part" of a message is the set of its recipients that share a route:
// delivery sends each part as its own transaction.
package route

import (
	"fmt"
	"path"
	"strings"
)

// Rule is one route. Empty match fields match anything; a Rule with
// neither matches every message.
type Rule struct {
	// Name names the route in logs and `queue show` ("billing"); the
	// config's default is "route N".
	Name string
	// Sender matches the envelope sender. With an @ it is a glob over the
	// whole address ("*@billing.example.com", "alerts@*"); without, a
	// glob over its domain ("billing.example.com", "*.example.com").
	// Matching ignores case. The null sender <> has no domain: only
	// "" or a pattern that matches "" ("*") matches it.
	Sender string
	// RecipientDomain is a glob over the recipient's domain.
	RecipientDomain string
	// Relays are relay names, tried in this order.
	Relays []string
}

// Options builds a Table.
type Options struct {
	// Rules are tried in order; the first that matches decides.
	Rules []Rule
	// Default is the relay list when no rule matches; its route is named
	// DefaultName.
	Default []string
}

// DefaultName names the implicit final route.
const DefaultName = "default"

// Route is what Match decides for a recipient.
type Route struct {
	Name   string
	Relays []string
}

// Table is an immutable routing table; safe for concurrent use.
type Table struct {
	rules []Rule
	def   Route
}

// New checks the patterns (path.Match syntax) and builds a Table.
func New(opts Options) (*Table, error) {
	t := &Table{def: Route{Name: DefaultName, Relays: opts.Default}}
	for i, r := range opts.Rules {
		for _, p := range []string{r.Sender, r.RecipientDomain} {
			if _, err := path.Match(strings.ToLower(p), ""); err != nil {
				return nil, fmt.Errorf("route: rule %d (%s): pattern %q: %w", i+1, r.Name, p, err)
			}
		}
		if len(r.Relays) == 0 {
			return nil, fmt.Errorf("route: rule %d (%s): no relays", i+1, r.Name)
		}
		r.Sender, r.RecipientDomain = strings.ToLower(r.Sender), strings.ToLower(r.RecipientDomain)
		t.rules = append(t.rules, r)
	}
	return t, nil
}

// Single is the table of a relayq with one relay: everything goes to it.
func Single(relay string) *Table {
	return &Table{def: Route{Name: DefaultName, Relays: []string{relay}}}
}

// Match returns the route of one recipient of a message from sender.
func (t *Table) Match(sender, recipient string) Route {
	sender, recipient = strings.ToLower(sender), strings.ToLower(recipient)
	for _, r := range t.rules {
		if matchSender(r.Sender, sender) && glob(r.RecipientDomain, domain(recipient)) {
			return Route{Name: r.Name, Relays: r.Relays}
		}
	}
	return t.def
}

// Relays lists every relay name the table may return, each once.
func (t *Table) Relays() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range append(append([]Rule(nil), t.rules...), Rule{Relays: t.def.Relays}) {
		for _, name := range r.Relays {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

func matchSender(pattern, sender string) bool {
	if pattern == "" {
		return true
	}
	if strings.Contains(pattern, "@") {
		return sender != "" && glob(pattern, sender)
	}
	return glob(pattern, domain(sender))
}

// glob matches s against pattern; an empty pattern matches anything.
func glob(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, s)
	return ok
}

// domain is the part after the last @; "" for an address without one.
func domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}
