package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metricName finds the metric names in PromQL: relayq's, Go's and the
// process collector's.
var metricName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\b(?:relayq|go|process)_[a-z0-9_]+\b`) })

// TestMonitoringFiles: the Grafana dashboard is JSON Grafana imports (a
// datasource input, panels with targets), the alert rules are a rules file
// in shape (groups, then rules with alert, expr, labels.severity and
// annotations.summary), and every metric either names is one relayq
// registers.
func TestMonitoringFiles(t *testing.T) {
	known := registeredNames(t)
	check := func(file, expr string) {
		t.Helper()
		for _, name := range metricName().FindAllString(expr, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !known[name] && !known[base] {
				t.Errorf("%s: %s is not a metric relayq serves (in %q)", file, name, expr)
			}
		}
	}

	dashFile := "../docs/monitoring/relayq-dashboard.json"
	var dash struct {
		Inputs []struct{ Name, Type, PluginID string } `json:"__inputs"`
		Title  string
		UID    string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
		Templating struct{ List []struct{ Definition string } }
	}
	data, err := os.ReadFile(dashFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashFile, err)
	}
	if len(dash.Inputs) != 1 || dash.Inputs[0].PluginID != "prometheus" || dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Errorf("%s: want a titled dashboard with a uid, one prometheus datasource input and panels", dashFile)
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no title or no query", dashFile, p.Title)
		}
		for _, tg := range p.Targets {
			check(dashFile, tg.Expr)
			exprs++
		}
	}
	for _, v := range dash.Templating.List {
		check(dashFile, v.Definition)
	}

	rulesFile := "../docs/monitoring/relayq-alerts.yml"
	data, err = os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range alertRules(t, rulesFile, string(data)) {
		check(rulesFile, r["expr"])
		for _, key := range []string{"expr", "severity", "summary"} {
			if r[key] == "" {
				t.Errorf("%s: alert %s has no %s", rulesFile, r["alert"], key)
			}
		}
	}
}

// alertRules reads a Prometheus rules file just far enough to check it
// without a YAML parser: "groups:", "- name:", "rules:", then each
// "- alert:" with its keys (expr as one line or a "|" block).
func alertRules(t *testing.T, file, text string) []map[string]string {
	t.Helper()
	lines := strings.Split(text, "\n")
	var rules []map[string]string
	var cur map[string]string
	inExpr := false
	seen := map[string]bool{}
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.Contains(line, "\t") {
			t.Fatalf("%s: a tab in %q (YAML indents with spaces)", file, line)
		}
		if inExpr && strings.HasPrefix(line, "          ") && !strings.Contains(trimmed, ": ") {
			cur["expr"] += " " + trimmed
			continue
		}
		inExpr = false
		key, value, _ := strings.Cut(strings.TrimPrefix(trimmed, "- "), ":")
		value = strings.Trim(strings.TrimSpace(value), `"`)
		seen[key] = true
		switch key {
		case "alert":
			cur = map[string]string{"alert": value}
			rules = append(rules, cur)
		case "expr", "for", "severity", "summary", "description":
			if cur == nil {
				t.Fatalf("%s: %s outside a rule", file, key)
			}
			cur[key] = value
			inExpr = key == "expr" && value == "|"
			if inExpr {
				cur["expr"] = ""
			}
		}
	}
	for _, k := range []string{"groups", "name", "rules", "labels", "annotations"} {
		if !seen[k] {
			t.Errorf("%s: no %q key", file, k)
		}
	}
	if len(rules) == 0 {
		t.Errorf("%s: no alerts", file)
	}
	return rules
}

// registeredNames are the metric names the daemon's registry serves,
// from the collectors' descriptions (a vector with no series yet has a
// description, not a sample).
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	r, intake, dl := daemonRegistry(t)
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	descs := make(chan *prometheus.Desc, 1000)
	intakeCollector{intake}.Describe(descs)
	deliveryCollector{dl}.Describe(descs)
	close(descs)
	for d := range descs {
		if sub := fqName.FindStringSubmatch(d.String()); sub != nil {
			names[sub[1]] = true
		}
	}
	return names
}
