package config

import (
	"strings"
	"testing"
)

// TestLimitsAndNotify: [limits] and [notify] as an administrator writes
// them, and what a mistake in them says (file, line, key).
func TestLimitsAndNotify(t *testing.T) {
	cfg := mustParse(t, testLoader(t), `
[limits]
messages_per_hour = 100
queued_bytes = "10MiB"

[[limits.rule]]
uid = 0
messages_per_hour = 0

[[limits.rule]]
unit = "cron.service"
queued_bytes = "50MiB"

[[limits.rule]]
user = "www-data"
messages_per_hour = 20

[notify]
bounce = "postmaster"
postmaster_address = "postmaster@example.org"
delay_warning_after = "4h"

[control]
admin_group = "4242"
`)
	l := cfg.Limits
	if l.MessagesPerHour != 100 || l.QueuedBytes != 10<<20 || len(l.Rules) != 3 {
		t.Fatalf("limits %+v", l)
	}
	type eff struct {
		kind, value string
		perHour     int
		bytes       ByteSize
	}
	want := []eff{{"uid", "0", 0, 10 << 20}, {"unit", "cron.service", 100, 50 << 20}, {"user", "www-data", 20, 10 << 20}}
	for i, r := range l.Rules {
		kind, value := r.Match()
		perHour, bytes := r.Effective(l)
		if got := (eff{kind, value, perHour, bytes}); got != want[i] {
			t.Errorf("rule %d: %+v, want %+v", i+1, got, want[i])
		}
	}
	if got := l.Rules.String(); got != "[uid 0: 0/h; unit cron.service: 50MiB; user www-data: 20/h]" {
		t.Errorf("rules in the log: %s", got)
	}
	if cfg.Notify.Bounce != BouncePostmaster || cfg.Notify.DelayWarningAfter.Hours() != 4 {
		t.Errorf("notify %+v", cfg.Notify)
	}
	if gid, err := cfg.Control.AdminGID(); gid != 4242 || err != nil {
		t.Errorf("admin gid %d, %v", gid, err)
	}
	inline := mustParse(t, testLoader(t), "[limits]\nrule = [{uid = 33, messages_per_hour = 5}]\n")
	if kind, value := inline.Limits.Rules[0].Match(); kind != "uid" || value != "33" {
		t.Errorf("inline rule: %s %s", kind, value)
	}
	if d := mustParse(t, testLoader(t), ""); d.Notify.Bounce != BounceNone || d.Control.AdminGroup != "" || len(d.Limits.Rules) != 0 {
		t.Errorf("defaults: notify %+v, admin group %q, rules %v", d.Notify, d.Control.AdminGroup, d.Limits.Rules)
	}
}

func TestLimitsAndNotifyRejected(t *testing.T) {
	rule := func(body string) string {
		return "[limits]\nmessages_per_hour = 1\n\n[[limits.rule]]\nuid = 1\n\n[[limits.rule]]\n" + body
	}
	tests := []struct{ name, text, want string }{
		{"negative rate", "[limits]\nmessages_per_hour = -1\n", "test.toml:2: limits.messages_per_hour: -1 must be at least 0"},
		{"negative bytes", "[limits]\nqueued_bytes = -5\n", "test.toml:2: limits.queued_bytes: -5 is negative"},
		{"rule with no match", rule("messages_per_hour = 3\n"), "test.toml:7: limits.rule[2]: give exactly one of uid, user and unit (found 0)"},
		{"rule with two matches", rule("uid = 2\nuser = \"bob\"\n"), "test.toml:7: limits.rule[2]: give exactly one of uid, user and unit (found 2)"},
		{"negative uid", rule("uid = -3\n"), "test.toml:8: limits.rule[2].uid: -3 is not a uid"},
		{"timer unit", rule("unit = \"backup.timer\"\n"), "test.toml:8: limits.rule[2].unit: \"backup.timer\": a timer's jobs run in the unit it starts; write \"backup.service\""},
		{"not a unit", rule("unit = \"cron\"\n"), "test.toml:8: limits.rule[2].unit: \"cron\" is not a systemd unit name"},
		{"bad user", rule("user = \"a b\"\n"), "test.toml:8: limits.rule[2].user: \"a b\" is not a user name"},
		{"rule rate negative", rule("user = \"bob\"\nmessages_per_hour = -2\n"), "test.toml:9: limits.rule[2].messages_per_hour: -2 must be at least 0"},
		{"same uid twice", rule("uid = 1\n"), "test.toml:8: limits.rule[2].uid: uid 1 has a rule already (limits.rule[1])"},
		{"rule unknown key", rule("pid = 1\n"), "test.toml:8: limits.rule.pid: unknown key"},
		{"rule bad size", rule("uid = 2\nqueued_bytes = \"lots\"\n"), "test.toml:9: limits.rule.queued_bytes: \"lots\" is not a size"},
		{"inline rule", "[limits]\nrule = [{uid = 1}, {unit = \"x\"}]\n", "test.toml:2: limits.rule[2].unit: \"x\" is not a systemd unit name"},
		{"bad bounce", "[notify]\nbounce = \"yes\"\n", "test.toml:2: notify.bounce: \"yes\" is not one of none, sender, postmaster"},
		{"postmaster without address", "[notify]\nbounce = \"postmaster\"\n", "test.toml:2: notify.bounce: \"postmaster\" needs notify.postmaster_address"},
		{"address without postmaster", "[notify]\nbounce = \"sender\"\npostmaster_address = \"pm@example.org\"\n", "test.toml:3: notify.postmaster_address: is only used with notify.bounce = \"postmaster\""},
		{"bad postmaster address", "[notify]\nbounce = \"postmaster\"\npostmaster_address = \"Postmaster <pm@example.org>\"\n", "test.toml:3: notify.postmaster_address: \"Postmaster <pm@example.org>\" is not an address"},
		{"delay warning without notices", "[notify]\ndelay_warning_after = \"4h\"\n", "test.toml:2: notify.delay_warning_after: needs notify.bounce"},
		{"delay warning after expiry", "[notify]\nbounce = \"sender\"\ndelay_warning_after = \"200h\"\n", "test.toml:3: notify.delay_warning_after: 200h is not shorter than retry.max_lifetime"},
		{"no such admin group", "[control]\nadmin_group = \"relayq-no-such-group\"\n", "test.toml:2: control.admin_group: no group \"relayq-no-such-group\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testLoader(t).parse([]byte(tt.text), "test.toml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.text)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("config:\n%s\nerror:\n  %v\nwant it to contain:\n  %s", tt.text, err, tt.want)
			}
		})
	}
}
