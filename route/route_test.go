package route

import (
	"slices"
	"testing"
)

func TestMatch(t *testing.T) {
	table, err := New(Options{
		Rules: []Rule{
			{Name: "billing", Sender: "*@billing.example.com", Relays: []string{"b", "a"}},
			{Name: "alerts", Sender: "alerts@*", Relays: []string{"c"}},
			{Name: "corp", Sender: "*.corp.example", Relays: []string{"c"}},
			{Name: "org", RecipientDomain: "*.example.org", Relays: []string{"org"}},
			{Name: "both", Sender: "example.net", RecipientDomain: "example.org", Relays: []string{"both"}},
		},
		Default: []string{"a", "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sender, rcpt, route string
		relays              []string
	}{
		{"invoice@billing.example.com", "x@example.com", "billing", []string{"b", "a"}},
		{"Invoice@BILLING.example.com", "x@example.com", "billing", []string{"b", "a"}},
		{"invoice@sub.billing.example.com", "x@example.com", "default", []string{"a", "b"}},
		{"alerts@mon.example.com", "x@example.com", "alerts", []string{"c"}},
		{"root@host.corp.example", "x@example.com", "corp", []string{"c"}},
		{"root@corp.example", "x@example.com", "default", []string{"a", "b"}},
		{"me@example.com", "x@mail.example.org", "org", []string{"org"}},
		{"me@example.net", "x@example.org", "both", []string{"both"}},
		{"me@example.com", "x@example.org", "default", []string{"a", "b"}},
		{"", "x@example.com", "default", []string{"a", "b"}},
		{"", "x@a.example.org", "org", []string{"org"}},
	} {
		got := table.Match(tc.sender, tc.rcpt)
		if got.Name != tc.route || !slices.Equal(got.Relays, tc.relays) {
			t.Errorf("Match(%q, %q) = %+v, want %s %v", tc.sender, tc.rcpt, got, tc.route, tc.relays)
		}
	}
	if got := table.Relays(); !slices.Equal(got, []string{"b", "a", "c", "org", "both"}) {
		t.Errorf("Relays() = %v", got)
	}
}

func TestNewRefusesBadRules(t *testing.T) {
	for _, r := range []Rule{
		{Name: "bad glob", RecipientDomain: "[example.org", Relays: []string{"a"}},
		{Name: "no relays", Sender: "example.com"},
	} {
		if _, err := New(Options{Rules: []Rule{r}, Default: []string{"a"}}); err == nil {
			t.Errorf("New accepted %+v", r)
		}
	}
}

func TestSingle(t *testing.T) {
	got := Single("default").Match("a@b.example", "c@d.example")
	if got.Name != DefaultName || !slices.Equal(got.Relays, []string{"default"}) {
		t.Errorf("Single: %+v", got)
	}
}
