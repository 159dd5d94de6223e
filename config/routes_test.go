package config

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// TestRelaysAndRoutes: [[relays]] entries get the defaults of [relay]
// (port from the scheme, pool sizes, EHLO name), [relay] stays the relay
// "default", routes get their names and the implicit final route.
func TestRelaysAndRoutes(t *testing.T) {
	cfg := mustParse(t, testLoader(t), `
[relay]
url = "smtp://a.example:25"

[[relays]]
id = "b"
url = "smtps://b.example"
max_connections = 2

[relays.auth]
user = "billing"
pass = "s3cret"

[[relays]]
id = "c"
host = "c.example"

[[routes]]
sender = "*@billing.example.com"
relays = ["b", "default"]

[[routes]]
name = "org"
recipient_domain = "*.example.org"
relays = ["c"]
`)
	var ids []string
	for _, r := range cfg.RelayList() {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"default", "b", "c"}) {
		t.Fatalf("relays %v", ids)
	}
	b, c := cfg.RelayList()[1], cfg.RelayList()[2]
	if b.Host != "b.example" || b.Port != 465 || !b.Secure || b.MaxConnections != 2 || b.MaxMessages != 100 || b.Auth.User != "billing" || b.Auth.Pass != "s3cret" {
		t.Errorf("relay b: %+v", b)
	}
	if c.Port != 587 || c.Name != "host.example" || !c.TLS.RejectUnauthorized || c.TLS.ServerName != "c.example" {
		t.Errorf("relay c: %+v", c)
	}
	if cfg.Routes[0].Name != "route 1" || cfg.Routes[1].Name != "org" {
		t.Errorf("route names %q %q", cfg.Routes[0].Name, cfg.Routes[1].Name)
	}
	if d := cfg.DefaultRoute(); !slices.Equal(d, []string{"default"}) {
		t.Errorf("default route %v", d)
	}
	var log strings.Builder
	slog.New(slog.NewTextHandler(&log, nil)).Info("config", "config", cfg)
	if strings.Contains(log.String(), "s3cret") || !strings.Contains(log.String(), "config.relays.0.id=b") {
		t.Errorf("the log shows a [[relays]] password, or not the relay: %s", log.String())
	}
}

// TestRelaysOnly: without [relay], the first [[relays]] entry gets what
// no route matches.
func TestRelaysOnly(t *testing.T) {
	cfg := mustParse(t, testLoader(t), `
[[relays]]
id = "primary"
url = "smtp://a.example"

[[relays]]
id = "backup"
url = "smtp://b.example"
`)
	if len(cfg.RelayList()) != 2 || cfg.RelayTable {
		t.Fatalf("relays %+v", cfg.RelayList())
	}
	if d := cfg.DefaultRoute(); !slices.Equal(d, []string{"primary"}) {
		t.Errorf("default route %v", d)
	}
}

// TestSingleRelayIsDefault: an existing config, [relay] only, is one relay
// called "default".
func TestSingleRelayIsDefault(t *testing.T) {
	cfg := mustParse(t, testLoader(t), "[relay]\nurl = \"smtp://a.example\"\n")
	list := cfg.RelayList()
	if len(list) != 1 || list[0].ID != "default" || list[0].Host != "a.example" || cfg.Routes != nil {
		t.Fatalf("relays %+v routes %+v", list, cfg.Routes)
	}
}

// TestWorkedExample: the two-provider example of config.toml.example,
// uncommented, loads (the pass files aside) and routes as it says.
func TestWorkedExample(t *testing.T) {
	text := string(exampleConfig)
	start := strings.Index(text, "#   [[relays]]")
	end := strings.Index(text, "\n\n[queue]")
	if start < 0 || end < start {
		t.Fatal("worked example not found in config.toml.example")
	}
	var lines []string
	for _, line := range strings.Split(text[start:end], "\n") {
		lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(line, "#"), "   "))
	}
	l := testLoader(t)
	l.skipSecrets = true // the pass files do not exist here
	cfg := mustParse(t, l, strings.Join(lines, "\n"))
	list := cfg.RelayList()
	if len(list) != 2 || list[0].ID != "provider-a" || list[1].Auth.User != "billing@example.com" || list[1].Port != 465 || list[1].RateLimit != 10 {
		t.Fatalf("relays %+v", list)
	}
	if len(cfg.Routes) != 2 || cfg.Routes[0].Name != "billing" || !slices.Equal(cfg.Routes[1].Relays, []string{"provider-a", "provider-b"}) {
		t.Errorf("routes %+v", cfg.Routes)
	}
	billing, rest := cfg.Routes[0], cfg.Routes[1]
	if !billing.OwnPolicy || billing.EnvelopeFrom != "bounces@billing.example.com" || billing.FromHeaderWhen != "always" || !billing.FromToReplyTo || rest.OwnPolicy {
		t.Errorf("route sender policies %+v, %+v", billing, rest)
	}
	if cfg.Rewrite.Domain != "example.com" || cfg.Rewrite.EnvelopeFrom != "noreply@example.com" ||
		!slices.Equal(cfg.Aliases.Map["root"], []string{"ops@example.com"}) || !cfg.SenderPolicyAtDelivery() {
		t.Errorf("[rewrite] %+v, [aliases] %+v", cfg.Rewrite, cfg.Aliases)
	}
}
