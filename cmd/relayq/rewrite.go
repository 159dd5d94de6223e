package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"relayq/config"
	"relayq/delivery"
	"relayq/rewrite"
	"relayq/route"
	"relayq/spool"
)

// hostNames are this host's own names: what os.Hostname says, the short
// name, and the fully qualified name (the host name if it has a dot, else
// its canonical name from /etc/hosts or DNS, as Postfix's myhostname).
type hostNames struct {
	host, short, fqdn string
}

// lookupHostNames reads the names; the DNS lookup is bounded by a few
// seconds, so that a host without a resolver still starts.
func lookupHostNames() hostNames {
	h, _ := os.Hostname()
	n := hostNames{host: h, short: h, fqdn: h}
	if i := strings.IndexByte(h, '.'); i > 0 {
		n.short = h[:i]
		return n
	}
	if c := hostsCanonical("/etc/hosts", h); strings.Contains(c, ".") {
		n.fqdn = c
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if c, err := net.DefaultResolver.LookupCNAME(ctx, h); err == nil && strings.Contains(strings.TrimSuffix(c, "."), ".") {
		n.fqdn = strings.TrimSuffix(c, ".")
	}
	return n
}

// hostsCanonical is the canonical name (the first) of the /etc/hosts line
// that lists name; "" when none does.
func hostsCanonical(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) > 1 && slices.ContainsFunc(fields[1:], func(f string) bool { return strings.EqualFold(f, name) }) {
			return fields[1]
		}
	}
	return ""
}

// rewriteOptions turns [rewrite], [aliases] and [defaults] into the rules'
// Options. The domain defaults to the host's fully qualified name; the
// aliases file is read here, its errors naming file and line.
func rewriteOptions(cfg *config.Config, names hostNames) (rewrite.Options, error) {
	r, a, d := cfg.Rewrite, cfg.Aliases, cfg.Defaults
	o := rewrite.Options{
		Domain:        r.Domain,
		LocalDomains:  []string{"localhost", "localhost.localdomain", names.host, names.short, names.fqdn, cfg.Submission.Hostname},
		Aliases:       map[string][]string{},
		AdminAddress:  a.AdminAddress,
		RefuseUnknown: a.Unknown == "refuse",
	}
	setSenderPolicy(&o, r.SenderPolicy)
	if o.Domain == "" {
		o.Domain = names.fqdn
	}
	if a.File != "" {
		file, err := rewrite.LoadAliases(a.File)
		if err != nil {
			return o, err
		}
		maps.Copy(o.Aliases, file)
	}
	maps.Copy(o.Aliases, a.Map) // the config's own win
	if d.From != "" {
		o.Defaults = append(o.Defaults, rewrite.Field{Name: "From", Value: d.From})
	}
	if d.ReplyTo != "" {
		o.Defaults = append(o.Defaults, rewrite.Field{Name: "Reply-To", Value: d.ReplyTo})
	}
	for _, name := range slices.Sorted(maps.Keys(d.Headers)) {
		o.Defaults = append(o.Defaults, rewrite.Field{Name: name, Value: d.Headers[name]})
	}
	return o, nil
}

// setSenderPolicy puts a sender policy ([rewrite]'s or a route's) into o.
func setSenderPolicy(o *rewrite.Options, p config.SenderPolicy) {
	o.Masquerade = p.MasqueradeDomains
	o.EnvelopeFrom, o.EnvelopeFromWhen = p.EnvelopeFrom, rewrite.When(p.EnvelopeFromWhen)
	o.FromHeader, o.FromHeaderWhen = p.FromHeader, rewrite.When(p.FromHeaderWhen)
	o.FromToReplyTo = p.FromToReplyTo
}

// newRewriting builds the rules intake applies, and warns when the domain
// addresses are qualified with has no dot: relays reject "root@vm". When
// the sender policy is applied at delivery (a route has its own, or
// matches on the sender), intake applies none: it qualifies, maps
// recipients and adds [defaults], and delivery applies each part's
// (senderPolicies).
func newRewriting(cfg *config.Config, log *slog.Logger) (spool.Rewriting, error) {
	o, err := rewriteOptions(cfg, lookupHostNames())
	if err != nil {
		return spool.Rewriting{}, err
	}
	if cfg.SenderPolicyAtDelivery() {
		setSenderPolicy(&o, config.SenderPolicy{})
	}
	rules, err := rewrite.New(o)
	if err != nil {
		return spool.Rewriting{}, fmt.Errorf("[aliases]: %w", err)
	}
	if !strings.Contains(o.Domain, ".") {
		log.Warn("addresses without a domain get one that is not fully qualified: relays reject such addresses; set [rewrite] domain", "domain", o.Domain)
	}
	return spool.Rewriting{Recipient: rules.Recipient, Message: rules.Message}, nil
}

// senderPolicies are the sender policies delivery applies to each part,
// by route name, when config.SenderPolicyAtDelivery (else nil: intake
// applied [rewrite]'s). A route without its own, and the final default route, get
// [rewrite]'s. At delivery the sender was qualified by intake, so an
// address at [rewrite] domain counts as local too.
func senderPolicies(cfg *config.Config, names hostNames) (map[string]delivery.SenderPolicy, error) {
	if !cfg.SenderPolicyAtDelivery() {
		return nil, nil
	}
	base, err := rewriteOptions(cfg, names)
	if err != nil {
		return nil, err
	}
	base.Aliases, base.AdminAddress, base.RefuseUnknown, base.Defaults = nil, "", false, nil
	base.LocalDomains = append(slices.Clone(base.LocalDomains), base.Domain)
	build := func(p config.SenderPolicy) (delivery.SenderPolicy, error) {
		o := base
		setSenderPolicy(&o, p)
		rules, err := rewrite.New(o)
		if err != nil {
			return nil, err
		}
		return rules.Message, nil
	}
	global, err := build(cfg.Rewrite.SenderPolicy)
	if err != nil {
		return nil, err
	}
	out := map[string]delivery.SenderPolicy{route.DefaultName: global}
	for _, r := range cfg.Routes {
		out[r.Name] = global
		if r.OwnPolicy {
			if out[r.Name], err = build(r.SenderPolicy); err != nil {
				return nil, fmt.Errorf("route %q: %w", r.Name, err)
			}
		}
	}
	return out, nil
}
