package config

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// NotifyConfig is the [notify] table: the delivery status notifications
// (RFC 3464) relayq sends itself when it gives up on a recipient, or,
// optionally, when a message has waited long.
type NotifyConfig struct {
	Bounce            string   `toml:"bounce"`              // "none" (default), "sender" or "postmaster"
	PostmasterAddress string   `toml:"postmaster_address"`  // where notices go with bounce = "postmaster"; default ""
	DelayWarningAfter Duration `toml:"delay_warning_after"` // one "still trying" notice after this long; "0s" (default) = none
	MaxPerHour        int      `toml:"max_per_hour"`        // notices to one address in an hour, the rest withheld; default 100, 0 = no cap
}

// DefaultNoticesPerHour is notify.max_per_hour's default.
const DefaultNoticesPerHour = 100

// Values of notify.bounce.
const (
	BounceNone       = "none"
	BounceSender     = "sender"
	BouncePostmaster = "postmaster"
)

// validateNotify checks [notify] and [control] admin_group.
func validateNotify(c *checker, cfg *Config) {
	n := cfg.Notify
	switch n.Bounce {
	case BounceNone, BounceSender, BouncePostmaster:
	default:
		c.add("notify.bounce", "%q is not one of none, sender, postmaster", n.Bounce)
	}
	switch {
	case n.Bounce == BouncePostmaster && n.PostmasterAddress == "":
		c.add("notify.bounce", "\"postmaster\" needs notify.postmaster_address")
	case n.PostmasterAddress != "" && n.Bounce != BouncePostmaster:
		c.add("notify.postmaster_address", "is only used with notify.bounce = \"postmaster\"")
	case n.PostmasterAddress != "" && !plainAddress(n.PostmasterAddress):
		c.add("notify.postmaster_address", "%q is not an address like postmaster@example.com (no <>, no name)", n.PostmasterAddress)
	}
	switch d := n.DelayWarningAfter.Duration; {
	case d < 0:
		c.add("notify.delay_warning_after", "%s must not be negative", n.DelayWarningAfter)
	case d > 0 && n.Bounce == BounceNone:
		c.add("notify.delay_warning_after", "needs notify.bounce = \"sender\" or \"postmaster\" (notices are off)")
	case d > 0 && d >= cfg.Retry.MaxLifetime.Duration:
		c.add("notify.delay_warning_after", "%s is not shorter than retry.max_lifetime (%s): the warning would never be sent", n.DelayWarningAfter, cfg.Retry.MaxLifetime)
	}
	if n.MaxPerHour < 0 {
		c.add("notify.max_per_hour", "%d must not be negative (0 sends every notice)", n.MaxPerHour)
	}
	if cfg.Control.AdminGroup != "" {
		cfg.UserDB = cfg.UserDB || groupName(cfg.Control.AdminGroup)
		if _, err := cfg.Control.AdminGID(); err != nil {
			c.add("control.admin_group", "%v", err)
		}
	}
}

// plainAddress accepts local@domain with no spaces, brackets or control
// characters.
func plainAddress(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune("<>()[],;:\\\"", r)
	})
}

// AdminGID returns the numeric admin group of the control socket, looking
// a name up in the group database; -1 when admin_group is empty.
func (c ControlConfig) AdminGID() (int, error) {
	return lookupGroup(c.AdminGroup)
}

// groupName reports whether group, a socket_group or admin_group, is a
// name that lookupGroup and SocketGID look up, not a gid.
func groupName(group string) bool {
	_, err := strconv.Atoi(group)
	return group != "" && err != nil
}

// lookupGroup turns a group name or a numeric gid into a gid; -1 for "".
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(name); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("%d is not a group id", gid)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if errors.As(err, new(user.UnknownGroupError)) {
		return 0, fmt.Errorf("no group %q", name)
	}
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}
