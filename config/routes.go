package config

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// DefaultRelayID is the id of the relay that a single [relay] table
// describes, and the relay of the implicit final route.
const DefaultRelayID = "default"

// NamedRelay is one [[relays]] entry: an id that routes name it by, and
// every key of [relay] (RelayConfig, with the same defaults and checks).
// The id is not called "name": in [relay], name is the EHLO name.
type NamedRelay struct {
	ID          string `toml:"id"` // required, unique; letters, digits, '-', '_', '.'
	RelayConfig        // the keys of [relay]
}

// RouteConfig is one [[routes]] entry. The routes are tried in order for
// each recipient of a message; the first whose match keys all match picks
// the relays, tried in the order given (failover). A route without match
// keys matches everything; after the last route comes an implicit one to
// the relay "default" (or the first relay when none is called that).
type RouteConfig struct {
	// Name names the route in logs and errors; default "route N" (N
	// counting from 1).
	Name string `toml:"name"`
	// Sender matches the envelope sender: a glob with an @ matches the
	// whole address ("*@billing.example.com", "alerts@*"), one without
	// matches its domain ("billing.example.com", "*.example.com").
	// Case-insensitive; "" matches any sender.
	Sender string `toml:"sender"`
	// RecipientDomain matches the recipient's domain, a glob
	// ("example.org", "*.example.org"); "" matches any.
	RecipientDomain string `toml:"recipient_domain"`
	// Relays are relay ids, tried in this order; required.
	Relays []string `toml:"relays"`
	// SenderPolicy is the route's own sender policy, the keys of [rewrite]
	// of the same names written in the route. When the route sets any of
	// them (OwnPolicy), it replaces [rewrite]'s for the route's recipients
	// (the keys it leaves out take their defaults, not [rewrite]'s).
	SenderPolicy
	// OwnPolicy: the route sets a key of SenderPolicy.
	OwnPolicy bool `toml:"-"`
}

// SenderPolicyAtDelivery reports whether the sender policy is applied at
// delivery, to each part with its route's policy, rather than at intake:
// when a route has its own sender policy, or matches on the sender (so
// that it sees the sender the program gave, qualified, not the one
// [rewrite] envelope_from puts in its place).
func (c *Config) SenderPolicyAtDelivery() bool {
	for _, r := range c.Routes {
		if r.OwnPolicy || r.Sender != "" {
			return true
		}
	}
	return false
}

var relayIDPattern = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// resolveRelays gives each [[relays]] entry the defaults of [relay] and
// checks it as [relay] is checked, then puts [relay] first in the list as
// the relay "default" when the file has it or has no [[relays]]. Each
// entry is checked on its own: its block of the file is read again as a
// [relay] table at the same lines, so that errors name the right line.
func (l loader) resolveRelays(cfg *Config, c *checker, host string) {
	blocks := arrayBlocks(c.data, "relays")
	if len(blocks) != len(cfg.Relays) {
		c.add("relays", "write each relay as its own [[relays]] table")
		return
	}
	seen := map[string]bool{}
	list := make([]NamedRelay, 0, len(cfg.Relays)+1)
	for _, b := range blocks {
		r, ok := l.resolveRelayBlock(c, b, host)
		if !ok {
			continue
		}
		switch {
		case r.ID == "":
			c.addAt(b.keyLine("id", b.header), "relays.id", "is required in each [[relays]] (the name routes use)")
		case !relayIDPattern().MatchString(r.ID):
			c.addAt(b.keyLine("id", 0), "relays.id", "%q is not a relay id (letters, digits, '.', '_', '-')", r.ID)
		case r.ID == DefaultRelayID && c.md.IsDefined("relay"):
			c.addAt(b.keyLine("id", 0), "relays.id", "%q is the relay that [relay] describes: rename this one, or move [relay] into it", r.ID)
		case seen[r.ID]:
			c.addAt(b.keyLine("id", 0), "relays.id", "%q names two relays", r.ID)
		}
		seen[r.ID] = true
		list = append(list, r)
	}
	cfg.Relays = list
	cfg.RelayTable = c.md.IsDefined("relay") || len(cfg.Relays) == 0
}

// RelayList is every relay: [relay] first, as the relay "default", when
// the file has it or has no [[relays]]; then [[relays]] in order.
func (c *Config) RelayList() []NamedRelay {
	if !c.RelayTable && len(c.Relays) > 0 {
		return c.Relays
	}
	return append([]NamedRelay{{ID: DefaultRelayID, RelayConfig: c.Relay}}, c.Relays...)
}

// resolveRelayBlock decodes and checks one [[relays]] block.
func (l loader) resolveRelayBlock(c *checker, b block, host string) (NamedRelay, bool) {
	doc := b.asTable(c.data, "relay")
	holder := struct {
		Relay NamedRelay `toml:"relay"`
	}{Relay: NamedRelay{RelayConfig: defaults().Relay}}
	md, err := toml.NewDecoder(strings.NewReader(doc)).Decode(&holder)
	if err != nil {
		c.errs = append(c.errs, renameRelayErrors(decodeError(c.name, []byte(doc), err))...)
		return NamedRelay{}, false
	}
	sub := &checker{name: c.name, data: []byte(doc), md: md}
	r := holder.Relay
	if r.Name == "" {
		r.Name = host
	}
	l.resolveRelay(&r.RelayConfig, sub)
	c.errs = append(c.errs, renameRelayErrors(sub.err())...)
	return r, true
}

var relayKeyInText = lazyRegexp(`(^|[^\w.-])relay\.`)

// renameRelayErrors turns the errors of a block read as [relay] into
// errors about [[relays]]: "relay.port" becomes "relays.port".
func renameRelayErrors(err error) []error {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		ce, ok := e.(*Error)
		if !ok {
			out = append(out, e)
			continue
		}
		ne := *ce
		if ne.Key == "relay" || strings.HasPrefix(ne.Key, "relay.") {
			ne.Key = "relays" + strings.TrimPrefix(ne.Key, "relay")
		}
		ne.Msg = relayKeyInText().ReplaceAllString(ne.Msg, "${1}relays.")
		out = append(out, &ne)
	}
	return out
}

// validateRoutes checks [[routes]]: names, globs, and that every relay
// named exists.
func validateRoutes(cfg *Config, c *checker) {
	blocks := arrayBlocks(c.data, "routes")
	if len(blocks) != len(cfg.Routes) {
		c.add("routes", "write each route as its own [[routes]] table")
		return
	}
	if len(cfg.Routes) == 0 {
		cfg.Routes = nil // "routes = []" is the default
	}
	ids := map[string]bool{}
	for _, r := range cfg.RelayList() {
		ids[r.ID] = true
	}
	names := map[string]bool{}
	for i := range cfg.Routes {
		r, b := &cfg.Routes[i], blocks[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("route %d", i+1)
		}
		if names[r.Name] {
			c.addAt(b.keyLine("name", b.header), "routes.name", "%q names two routes", r.Name)
		}
		names[r.Name] = true
		for _, k := range []struct{ key, glob string }{{"sender", r.Sender}, {"recipient_domain", r.RecipientDomain}} {
			if _, err := path.Match(k.glob, ""); err != nil || strings.ContainsAny(k.glob, " <>\"") {
				c.addAt(b.keyLine(k.key, b.header), "routes."+k.key, "%q is not a valid pattern", k.glob)
			}
		}
		if strings.Count(r.Sender, "@") > 1 {
			c.addAt(b.keyLine("sender", b.header), "routes.sender", "%q has more than one @", r.Sender)
		}
		if len(r.Relays) == 0 {
			c.addAt(b.keyLine("relays", b.header), "routes.relays", "route %q names no relay", r.Name)
		}
		validateRoutePolicy(r, b, c)
		for _, id := range r.Relays {
			if !ids[id] {
				c.addAt(b.keyLine("relays", b.header), "routes.relays", "route %q names relay %q, which is not defined (relays: %s)", r.Name, id, relayIDs(cfg.RelayList()))
			}
		}
	}
}

// validateRoutePolicy checks a route's sender policy, each error at the
// line of its key, and gives the policy its defaults.
func validateRoutePolicy(r *RouteConfig, b block, c *checker) {
	for _, k := range senderPolicyKeys {
		r.OwnPolicy = r.OwnPolicy || b.keyLine(k, 0) > 0
	}
	if !r.OwnPolicy {
		return
	}
	r.problems(func(key, format string, args ...any) {
		c.addAt(b.keyLine(key, b.header), "routes."+key, "route %q: "+format, append([]any{r.Name}, args...)...)
	})
	if r.EnvelopeFromWhen == "" {
		r.EnvelopeFromWhen = "local"
	}
	if r.FromHeaderWhen == "" {
		r.FromHeaderWhen = "local"
	}
}

func relayIDs(rs []NamedRelay) string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return strings.Join(ids, ", ")
}

// DefaultRoute is the relay list of the implicit final route: "default"
// when there is such a relay, else the first relay.
func (c *Config) DefaultRoute() []string {
	list := c.RelayList()
	for _, r := range list {
		if r.ID == DefaultRelayID {
			return []string{DefaultRelayID}
		}
	}
	if len(list) == 0 {
		return nil
	}
	return []string{list[0].ID}
}

// addAt records a problem with key at a line found by the caller (keys of
// an array of tables, which the metadata cannot place).
func (c *checker) addAt(line int, key, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.name, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// block is the lines of one [[name]] entry: its header line and, up to the
// next table header that is not one of its sub-tables ([name.auth]), its
// body. Lines count from 1.
type block struct {
	name        string
	header, end int // end is the last line of the block
	lines       []string
}

// arrayBlocks finds each [[name]] entry of data in order.
func arrayBlocks(data []byte, name string) []block {
	if !hasArrayHeader(data, name) {
		return nil // most configs: no line slice for blocks that are not there
	}
	lines := strings.Split(string(data), "\n")
	var out []block
	in := -1
	for i, line := range lines {
		switch {
		case isArrayHeader(line, name): // lines.go
			if in >= 0 {
				out[in].end = i
			}
			out = append(out, block{name: name, header: i + 1, lines: lines})
			in = len(out) - 1
		case in >= 0 && isSubTable(line, name):
		case in >= 0 && isTableHeader(line):
			out[in].end = i
			in = -1
		}
	}
	if in >= 0 {
		out[in].end = len(lines)
	}
	return out
}

// hasArrayHeader says whether a line of data is a [[name]] header.
func hasArrayHeader(data []byte, name string) bool {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		if isArrayHeader(line, name) {
			return true
		}
	}
	return false
}

// keyLine is the line in b that sets key (in b's own table, before any
// sub-table), or def.
func (b block) keyLine(key string, def int) int {
	for n := b.header + 1; n <= b.end; n++ {
		if isTableHeader(b.lines[n-1]) {
			break
		}
		if setsKey(b.lines[n-1], key) {
			return n
		}
	}
	return def
}

// asTable returns data with every line outside b blanked and b's headers
// renamed to table ("[[relays]]" → "[relay]", "[relays.auth]" →
// "[relay.auth]"), so that it decodes as that table at the same lines.
func (b block) asTable(data []byte, table string) string {
	lines := strings.Split(string(data), "\n")
	out := make([]string, len(lines))
	sub := regexp.MustCompile(`^(\s*\[\s*)` + regexp.QuoteMeta(b.name) + `(\s*\.)`)
	for n := b.header; n <= b.end; n++ {
		line := lines[n-1]
		if n == b.header {
			line = "[" + table + "]"
		}
		out[n-1] = sub.ReplaceAllString(line, "${1}"+table+"${2}")
	}
	return strings.Join(out, "\n")
}
