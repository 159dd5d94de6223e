package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// RewriteConfig is the [rewrite] table: how addresses are qualified and the
// sender policy. Intake applies it on every way in (socket, listeners,
// sendmail, maildrop), with the daemon's config; when a [[routes]] entry has
// its own sender policy or matches on the sender, the sender policy is
// applied at delivery instead, to each part (Config.SenderPolicyAtDelivery).
type RewriteConfig struct {
	// Domain is given to an address without a domain ("root") and to one at
	// this host's own names ("root@vm"), as Postfix's myorigin. Default:
	// submission.hostname when the file sets it, else "" here, which the
	// daemon resolves to the host's fully qualified name at start.
	Domain       string `toml:"domain"`
	SenderPolicy        // the global sender policy
}

// SenderPolicy is a sender policy: the keys of [rewrite] that decide the
// sender the relay gets. [rewrite] has the global one; a [[routes]] entry
// that sets any of these keys has its own, which replaces the global one
// (as a whole: keys it leaves out take their defaults) for its recipients.
type SenderPolicy struct {
	// MasqueradeDomains: a sender at a host below one of them loses the host
	// part ("user@host.example.com" → "user@example.com"); default none.
	MasqueradeDomains []string `toml:"masquerade_domains"`
	// EnvelopeFrom replaces MAIL FROM for the senders EnvelopeFromWhen says
	// ("local": without a domain or at this host; "always"); "" keeps it.
	EnvelopeFrom     string `toml:"envelope_from"`
	EnvelopeFromWhen string `toml:"envelope_from_when"`
	// FromHeader replaces the address of the From field, keeping its
	// display name, for the senders FromHeaderWhen says; FromToReplyTo puts
	// the address it replaced in Reply-To when the message has none.
	FromHeader     string `toml:"from_header"`
	FromHeaderWhen string `toml:"from_header_when"`
	FromToReplyTo  bool   `toml:"from_to_reply_to"`
}

// senderPolicyKeys are the keys of SenderPolicy.
var senderPolicyKeys = []string{"masquerade_domains", "envelope_from", "envelope_from_when", "from_header", "from_header_when", "from_to_reply_to"}

// problems checks a sender policy; at gives each problem's key (without a
// prefix) and message.
func (p SenderPolicy) problems(at func(key, format string, args ...any)) {
	for _, d := range p.MasqueradeDomains {
		if !isHostname(d) {
			at("masquerade_domains", "%q is not a domain name", d)
		}
	}
	for _, m := range []struct{ key, v string }{{"envelope_from", p.EnvelopeFrom}, {"from_header", p.FromHeader}} {
		if m.v != "" && !isMailbox(m.v) {
			at(m.key, "%q is not an address (local@domain)", m.v)
		}
	}
	for _, w := range []struct{ key, v string }{{"envelope_from_when", p.EnvelopeFromWhen}, {"from_header_when", p.FromHeaderWhen}} {
		if w.v != "" && w.v != "local" && w.v != "always" {
			at(w.key, "%q is not one of local, always", w.v)
		}
	}
}

// AliasesConfig is the [aliases] table: local names ("root") mapped to
// addresses or other local names. Three keys are settings, not aliases:
// aliases_file, admin_address and unknown.
type AliasesConfig struct {
	// Map is each alias's targets: `root = "ops@example.com"` or
	// `root = ["a@example.com", "b@example.com"]`. Keys in lower case.
	Map map[string][]string `toml:"-"`
	// File is an /etc/aliases-style file read at start besides Map (an
	// alias in Map wins); "" = none. Relative to StateDir.
	File string `toml:"aliases_file"`
	// AdminAddress receives every local recipient no alias names
	// (nullmailer's adminaddr); "" = none.
	AdminAddress string `toml:"admin_address"`
	// Unknown is what happens to a local recipient no alias names when
	// AdminAddress is "": "qualify" (default: rewrite.domain is given to it)
	// or "refuse" (550 5.1.1 at intake, sendmail exits 67).
	Unknown string `toml:"unknown"`

	bad []string // keys whose value is neither a string nor a list of strings
}

// aliasSettings are the keys of [aliases] that are not aliases.
var aliasSettings = []string{"aliases_file", "admin_address", "unknown"}

// UnmarshalTOML takes the [aliases] table: settings and aliases in one.
func (a *AliasesConfig) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("aliases must be a table")
	}
	for k, val := range m {
		list, ok := stringList(val)
		switch {
		case !ok || (slices.Contains(aliasSettings, k) && len(list) != 1):
			a.bad = append(a.bad, k)
		case k == "aliases_file":
			a.File = list[0]
		case k == "admin_address":
			a.AdminAddress = list[0]
		case k == "unknown":
			a.Unknown = list[0]
		default:
			if a.Map == nil {
				a.Map = make(map[string][]string)
			}
			a.Map[strings.ToLower(k)] = list
		}
	}
	return nil
}

func stringList(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return []string{v}, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, len(out) > 0
	}
	return nil, false
}

// DefaultsConfig is the [defaults] table: header fields added to a message
// that lacks them. A message's own field always wins; the sender policy
// of [rewrite] applies after, to a default From too.
type DefaultsConfig struct {
	From    string            `toml:"from"`     // From for a message without one; "" = none added here
	ReplyTo string            `toml:"reply_to"` // Reply-To for a message without one
	Headers map[string]string `toml:"headers"`  // any other field, by name: List-Unsubscribe = "<mailto:…>"
}

// resolveRewrite fills in rewrite.domain from submission.hostname and makes
// the aliases file absolute.
func (l loader) resolveRewrite(cfg *Config, c *checker) {
	if cfg.Rewrite.Domain == "" && c.set("submission.hostname") {
		cfg.Rewrite.Domain = cfg.Submission.Hostname
	}
	if f := cfg.Aliases.File; f != "" && !filepath.IsAbs(f) {
		cfg.Aliases.File = filepath.Join(cfg.StateDir, f)
	}
	if cfg.Aliases.Unknown == "" {
		cfg.Aliases.Unknown = "qualify"
	}
}

// validateRewrite checks [rewrite], [aliases] and [defaults].
func validateRewrite(c *checker, cfg *Config) {
	r := cfg.Rewrite
	if r.Domain != "" && !isHostname(r.Domain) {
		c.add("rewrite.domain", "%q is not a domain name", r.Domain)
	}
	r.problems(func(key, format string, args ...any) { c.add("rewrite."+key, format, args...) })

	a := cfg.Aliases
	slices.Sort(a.bad)
	for _, k := range a.bad {
		if slices.Contains(aliasSettings, k) {
			c.add("aliases."+k, "must be a string")
		} else {
			c.add("aliases."+k, "must be an address or a list of addresses")
		}
	}
	checkMailbox(c, "aliases.admin_address", a.AdminAddress)
	if a.Unknown != "qualify" && a.Unknown != "refuse" {
		c.add("aliases.unknown", "%q is not one of qualify, refuse", a.Unknown)
	}
	for _, k := range slices.Sorted(maps.Keys(a.Map)) {
		for _, t := range a.Map[k] {
			if err := checkAliasTarget(t); err != nil {
				c.add("aliases."+k, "%v", err)
			}
		}
	}

	d := cfg.Defaults
	checkHeaderValue(c, "defaults.from", d.From)
	checkHeaderValue(c, "defaults.reply_to", d.ReplyTo)
	for _, name := range slices.Sorted(maps.Keys(d.Headers)) {
		if !validFieldName(name) {
			c.add("defaults.headers."+name, "%q is not a header field name", name)
		}
		checkHeaderValue(c, "defaults.headers."+name, d.Headers[name])
	}
}

// checkMailbox checks an address relayq sends as it is (isMailbox).
func checkMailbox(c *checker, key, a string) {
	if a != "" && !isMailbox(a) {
		c.add(key, "%q is not an address (local@domain)", a)
	}
}

// isMailbox: local@domain, nothing that could end a header or an SMTP
// command.
func isMailbox(a string) bool {
	l, d, ok := strings.Cut(a, "@")
	return ok && l != "" && !strings.HasPrefix(l, "-") && isHostname(d) && !strings.ContainsAny(a, " \t\r\n<>,\"()")
}

// checkAliasTarget refuses what relayq cannot do: deliver to a pipe, a
// file or an :include:; a target is an address or a local name. It says
// what rewrite.CheckTarget says of an aliases file's targets, in config's
// own words: config imports nothing of relayq's (../shared/STYLE.md §4b).
func checkAliasTarget(t string) error {
	switch {
	case strings.HasPrefix(t, "|"):
		return fmt.Errorf("pipe target %q refused: relayq never delivers locally; give an address", t)
	case strings.HasPrefix(t, "/"):
		return fmt.Errorf("file target %q refused: relayq never delivers locally; give an address", t)
	case strings.HasPrefix(strings.ToLower(t), ":include:"):
		return fmt.Errorf("%q refused: relayq does not read :include: files; list the addresses here", t)
	case t == "" || strings.ContainsAny(t, " \t\r\n<>,\"()") || strings.HasPrefix(t, "-"):
		return fmt.Errorf("%q is not an address or a local name", t)
	}
	return nil
}

func checkHeaderValue(c *checker, key, v string) {
	if strings.ContainsAny(v, "\r\n\x00") {
		c.add(key, "must be one line")
	}
}

// validFieldName is RFC 5322's field-name: printable ASCII but ':'.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == ':' {
			return false
		}
	}
	return true
}
