package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// LimitsConfig is the [limits] table: how much each local submitter may
// send. The top-level keys are the default, which applies to each uid on
// its own; [[limits.rule]] entries give a uid, a user or a systemd unit
// limits of its own. 0 means no limit; both are 0 by default.
type LimitsConfig struct {
	MessagesPerHour int        `toml:"messages_per_hour"` // messages accepted per sliding hour
	QueuedBytes     ByteSize   `toml:"queued_bytes"`      // bytes of its messages waiting in the queue
	Rules           LimitRules `toml:"rule"`              // [[limits.rule]]; default none
}

// LimitRule is one [[limits.rule]]: exactly one of UID, User and Unit
// says whom it matches; a limit it leaves out is the default's.
type LimitRule struct {
	UID             *int      `toml:"uid"`
	User            string    `toml:"user"`
	Unit            string    `toml:"unit"` // "cron.service": every process of that unit together
	MessagesPerHour *int      `toml:"messages_per_hour"`
	QueuedBytes     *ByteSize `toml:"queued_bytes"`
}

// LimitRules are the [[limits.rule]] entries, in file order.
type LimitRules []LimitRule

// Match says whom r matches: ("uid", "1000"), ("user", "www-data") or
// ("unit", "cron.service").
func (r LimitRule) Match() (kind, value string) {
	switch {
	case r.UID != nil:
		return "uid", strconv.Itoa(*r.UID)
	case r.User != "":
		return "user", r.User
	}
	return "unit", r.Unit
}

// Effective returns r's limits, taking what it leaves out from l.
func (r LimitRule) Effective(l LimitsConfig) (messagesPerHour int, queuedBytes ByteSize) {
	messagesPerHour, queuedBytes = l.MessagesPerHour, l.QueuedBytes
	if r.MessagesPerHour != nil {
		messagesPerHour = *r.MessagesPerHour
	}
	if r.QueuedBytes != nil {
		queuedBytes = *r.QueuedBytes
	}
	return messagesPerHour, queuedBytes
}

// String shows the rules in the start-up log: "uid 1000: 100/h, 50MiB".
func (rs LimitRules) String() string {
	var parts []string
	for _, r := range rs {
		kind, value := r.Match()
		s := kind + " " + value + ":"
		if r.MessagesPerHour != nil {
			s += fmt.Sprintf(" %d/h", *r.MessagesPerHour)
		}
		if r.QueuedBytes != nil {
			s += " " + r.QueuedBytes.String()
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// unitTypes are the systemd unit types that hold processes.
var unitTypes = []string{".service", ".scope", ".socket", ".mount", ".swap"}

// validateLimits checks [limits]. A problem in a rule names it as
// limits.rule[N] (from 1) and the line of the key at fault.
func validateLimits(c *checker, l LimitsConfig) {
	atLeast(c, "limits.messages_per_hour", l.MessagesPerHour, 0)
	seen := map[string]int{}
	for i, r := range l.Rules {
		name := fmt.Sprintf("limits.rule[%d]", i+1)
		bad := func(key, format string, args ...any) {
			k := name
			if key != "" {
				k += "." + key
			}
			c.errs = append(c.errs, &Error{File: c.name, Line: ruleLine(c.data, i, key), Key: k, Msg: fmt.Sprintf(format, args...)})
		}
		n := 0
		for _, set := range []bool{r.UID != nil, r.User != "", r.Unit != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad("", "give exactly one of uid, user and unit (found %d)", n)
			continue
		}
		switch {
		case r.UID != nil && *r.UID < 0:
			bad("uid", "%d is not a uid", *r.UID)
		case r.User != "" && strings.ContainsAny(r.User, ": \t\n"):
			bad("user", "%q is not a user name", r.User)
		case r.Unit != "":
			checkUnit(r.Unit, func(format string, args ...any) { bad("unit", format, args...) })
		}
		if r.MessagesPerHour != nil && *r.MessagesPerHour < 0 {
			bad("messages_per_hour", "%d must be at least 0", *r.MessagesPerHour)
		}
		kind, value := r.Match()
		if j, dup := seen[kind+" "+value]; dup {
			bad(kind, "%s %s has a rule already (limits.rule[%d])", kind, value, j)
		}
		seen[kind+" "+value] = i + 1
	}
}

func checkUnit(unit string, bad func(format string, args ...any)) {
	if base, ok := strings.CutSuffix(unit, ".timer"); ok {
		bad("%q: a timer's jobs run in the unit it starts; write %q", unit, base+".service")
		return
	}
	for _, t := range unitTypes {
		if len(unit) > len(t) && strings.HasSuffix(unit, t) && !strings.ContainsAny(unit, "/ \t\n") {
			return
		}
	}
	bad("%q is not a systemd unit name (like \"cron.service\" or \"session-3.scope\")", unit)
}

// Compiled on first use (see mdError): only errors need them.
var (
	ruleHeader  = lazyRegexp(`^\s*\[\[\s*limits\s*\.\s*rule\s*\]\]`)
	tableHeader = lazyRegexp(`^\s*\[`)
)

// ruleLine is the line of key ("" for the entry itself) in the n-th
// (from 0) [[limits.rule]] of data; the line of "rule = [...]" when the
// rules are written inline; 0 when neither is found.
func ruleLine(data []byte, n int, key string) int {
	count, header := -1, 0
	keyRe := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case ruleHeader().MatchString(line):
			count++
			if count == n {
				header = i + 1
				if key == "" {
					return header
				}
			} else if header > 0 {
				return header
			}
		case tableHeader().MatchString(line) && header > 0:
			return header
		case header > 0 && keyRe.MatchString(line):
			return i + 1
		}
	}
	if header > 0 {
		return header
	}
	return keyLine(data, []string{"limits", "rule"})
}

// arrayTableKeyLine finds the line of key in an array of tables, where
// keyLine cannot ("limits.rule.pid" in [[limits.rule]]): the first line
// setting its last part under a [[…]] header for the rest; 0 if none.
func arrayTableKeyLine(data []byte, key []string) int {
	if len(key) < 2 {
		return 0
	}
	parts := make([]string, len(key)-1)
	for i, k := range key[:len(key)-1] {
		parts[i] = regexp.QuoteMeta(k)
	}
	header := regexp.MustCompile(`^\s*\[\[\s*` + strings.Join(parts, `\s*\.\s*`) + `\s*\]\]`)
	keyRe := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key[len(key)-1]) + `\s*=`)
	in := false
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case header.MatchString(line):
			in = true
		case tableHeader().MatchString(line):
			in = false
		case in && keyRe.MatchString(line):
			return i + 1
		}
	}
	return 0
}
