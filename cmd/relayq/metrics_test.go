package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"relayq/delivery"
	"relayq/queue"
	"relayq/transport"
)

// TestHealthz: /healthz is 200 "ok" only while the queue answers and the
// delivery loop runs; otherwise 503 with the reason.
func TestHealthz(t *testing.T) {
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	d := &daemon{q: q, done: make(chan struct{}), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	expect := func(what string, code int, body string) {
		t.Helper()
		w := httptest.NewRecorder()
		(&health{d: d}).serve(w, httptest.NewRequest("GET", "/healthz", nil))
		if w.Code != code || !strings.Contains(w.Body.String(), body) {
			t.Errorf("%s: %d %q, want %d and %q", what, w.Code, w.Body.String(), code, body)
		}
	}
	expect("before delivery starts", http.StatusServiceUnavailable, "unhealthy: delivery not started")

	tr := transport.New(transport.Options{Address: "127.0.0.1:9"})
	defer tr.Close()
	dv := delivery.New(delivery.Options{Queue: q, Transport: tr, Logger: d.log})
	d.deliverer.Store(dv)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); dv.Run(ctx) }()
	for dv.LastTick().IsZero() {
		time.Sleep(time.Millisecond)
	}
	expect("running", http.StatusOK, "ok\n")

	d.stopping = true
	expect("stopping", http.StatusServiceUnavailable, "unhealthy: shutting down")
	d.stopping = false

	q.Close()
	expect("queue closed", http.StatusServiceUnavailable, "unhealthy: queue: ")

	cancel()
	<-ran
	close(d.done)
	expect("delivery returned", http.StatusServiceUnavailable, "unhealthy: delivery stopped")
}

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

	dashFile := "../../docs/monitoring/relayq-dashboard.json"
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

	rulesFile := "../../docs/monitoring/relayq-alerts.yml"
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
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m := newMetrics()
	m.reg.MustRegister(q.Collector(nil))
	tr := transport.New(transport.Options{Address: "127.0.0.1:9"})
	defer tr.Close()
	m.addDeliverer(delivery.New(delivery.Options{Queue: q, Transport: tr}))
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	descs := make(chan *prometheus.Desc, 1000)
	for _, c := range append(m.spool.Collectors(), m.delivery.Collectors()...) {
		c.Describe(descs)
	}
	close(descs)
	for d := range descs {
		if sub := fqName.FindStringSubmatch(d.String()); sub != nil {
			names[sub[1]] = true
		}
	}
	return names
}
