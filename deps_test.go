package relayq

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports keeps the imports pointing one way (../shared/STYLE.md
// §4b): cmd → config, spool, delivery, control → queue, transport; spool and
// control → acceptretry (their shared accept loop fix). Each entry says why.
var forbiddenImports = map[string]map[string]string{
	"queue": {
		"relayq/config":    "the store takes plain Options; only cmd reads the config",
		"relayq/api":       "the API calls the store, not the other way",
		"relayq/transport": "the store knows nothing of SMTP on the wire",
		"relayq/spool":     "intake calls the store, not the other way",
		"relayq/delivery":  "delivery calls the store, not the other way",
		"relayq/control":   "the control socket calls the store, not the other way",
	},
	"transport": {
		"relayq/config":   "the transport takes plain Options; only cmd reads the config",
		"relayq/queue":    "the transport reports what happened; the store is delivery's business",
		"relayq/delivery": "delivery calls the transport, not the other way",
		"relayq/spool":    "intake has nothing to do with the relay side",
	},
	"spool": {
		"relayq/config":    "intake takes plain Options; only cmd reads the config",
		"relayq/api":       "the API calls intake (Server.Submit), not the other way",
		"relayq/delivery":  "intake and delivery meet only in the store",
		"relayq/transport": "intake never talks to the relay",
	},
	"delivery": {
		"relayq/config": "delivery takes plain Options; only cmd reads the config",
		"relayq/spool":  "intake and delivery meet only in the store",
	},
	"control": {
		"relayq/config":   "the control socket takes plain arguments; only cmd reads the config",
		"relayq/delivery": "it answers from the store",
		"relayq/spool":    "it answers from the store",
	},
	"acceptretry": {
		"relayq/config":    "a listener wrapper takes a logger, not the config",
		"relayq/queue":     "it knows only net.Listener; spool and control share it",
		"relayq/spool":     "spool imports it, not the other way",
		"relayq/control":   "control imports it, not the other way",
		"relayq/transport": "it has nothing to do with the relay side",
		"relayq/delivery":  "it has nothing to do with delivery",
	},
	"rewrite": {
		"relayq/config":    "the rules take plain Options; only cmd reads the config",
		"relayq/queue":     "pure functions over addresses and bytes; intake stores the result",
		"relayq/spool":     "intake calls the rules through hooks, not the other way",
		"relayq/delivery":  "the rules run at intake, never at delivery",
		"relayq/transport": "the rules know nothing of the relay",
	},
	"smtpcmd": {
		"relayq/queue":     "it formats command lines from go-smtp's options; callers map their records",
		"relayq/delivery":  "it knows nothing of delivery",
		"relayq/control":   "it knows nothing of the control socket",
		"relayq/spool":     "spool's sendmail client imports it, not the other way",
		"relayq/transport": "the transport imports it, not the other way",
		"relayq/config":    "it takes plain arguments; only cmd reads the config",
	},
	"route": {
		"relayq/config":    "the table is built from plain Options; only cmd reads the config",
		"relayq/queue":     "it decides from addresses alone",
		"relayq/transport": "it names relays; delivery owns their transports",
		"relayq/delivery":  "delivery asks it, not the other way",
	},
	"api": {
		"relayq/config":    "the API takes plain Options; only cmd reads the config",
		"relayq/delivery":  "it queues and answers from the store; delivery is not its business",
		"relayq/transport": "it never talks to the relay",
		"relayq/control":   "status comes from the store itself, not through the control socket",
	},
	// relayq-sendmail runs once per message: it links only what a
	// submission needs (issue 15).
	"cmd/internal/sendmail": {
		"relayq/delivery":  "a submission never delivers",
		"relayq/transport": "a submission never talks to the relay",
		"relayq/metrics":   "client_golang's init would cost every message over a millisecond",
		"relayq/control":   "-bp, -bi and -q are the caller's (Modes), not sendmail's",
		"relayq/api":       "a submission goes through the socket",
	},
	"cmd/relayq-sendmail": {
		"relayq/delivery":  "a submission never delivers",
		"relayq/transport": "a submission never talks to the relay",
		"relayq/metrics":   "client_golang's init would cost every message over a millisecond",
		"relayq/control":   "it hands -bp, -bi and -q to relayq",
		"relayq/api":       "a submission goes through the socket",
		"relayq/config":    "package sendmail reads the config",
	},
	"transport/smtptest": {
		"relayq/queue":     "a test peer knows only SMTP",
		"relayq/transport": "it tests the transport, so must not depend on it",
	},
}

func TestImportDirection(t *testing.T) {
	for dir, banned := range forbiddenImports {
		for imp, file := range packageImports(t, dir) {
			if why, bad := banned[imp]; bad {
				t.Errorf("%s imports %s (%s): %s", dir, imp, file, why)
			}
		}
	}
}

// onlyImporter names, for the packages of relayq that only some packages
// may import, those packages and why.
var onlyImporter = map[string]struct {
	dirs []string
	why  string
}{
	"relayq/config":  {[]string{"cmd/relayq", "cmd/internal/sendmail"}, "only the commands read the config; every other package takes plain Options"},
	"relayq":         {[]string{"config"}, "the root package only embeds config.toml.example and packaging/config.toml for config (go:embed cannot reach \"..\")"},
	"relayq/metrics": {[]string{"cmd/relayq"}, "only the daemon serves metrics; a client binary must not link client_golang"},
}

// TestOnlyImporter checks every package of the module, tests included.
func TestOnlyImporter(t *testing.T) {
	forEachImport(t, func(path, p string) {
		if only, ok := onlyImporter[p]; ok && !slices.Contains(only.dirs, filepath.Dir(path)) {
			t.Errorf("%s imports %s: %s", path, p, only.why)
		}
	})
}

// TestPrometheusOnlyInMetrics: package metrics is the one place that
// imports github.com/prometheus/... Every other package keeps plain
// figures: `relayq sendmail` links spool (and through it queue), and
// client_golang's package init (its default registry, procfs's
// package-level regexps, protobuf's detrand reading /proc/self/exe) costs
// over a millisecond of every call. The end-to-end tests in tests/ may
// parse a scrape with Prometheus' own parser; they are never linked into
// relayq.
func TestPrometheusOnlyInMetrics(t *testing.T) {
	forEachImport(t, func(path, p string) {
		dir := filepath.Dir(path)
		if dir == "metrics" || (dir == "tests" && strings.HasSuffix(path, "_test.go")) {
			return
		}
		if strings.HasPrefix(p, "github.com/prometheus/") {
			t.Errorf("%s imports %s: only package metrics imports Prometheus (the packages that count keep plain figures)", path, p)
		}
	})
}

// forEachImport calls f with every Go file of the module (tests included,
// testdata and hidden directories left out) and each path it imports.
func forEachImport(t *testing.T, f func(file, imp string)) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range parsed.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			f(path, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConfigImports: config decodes a file and nothing else, so it imports
// the standard library, the TOML decoder and the root package's embedded
// example, and no package of relayq that does anything.
func TestConfigImports(t *testing.T) {
	for imp, file := range packageImports(t, "config") {
		first, _, _ := strings.Cut(imp, "/")
		switch {
		case imp == "relayq", imp == "github.com/BurntSushi/toml":
		case strings.HasPrefix(imp, "relayq/"), strings.Contains(first, "."):
			t.Errorf("config imports %s (%s): it imports only the standard library, BurntSushi/toml and relayq (the embed)", imp, file)
		}
	}
}

// TestNoGrabBagPackages keeps helpers next to the code that uses them.
func TestNoGrabBagPackages(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		switch d.Name() {
		case "util", "utils", "common", "helpers", "types", "models":
			t.Errorf("package directory %s: name it for what it does", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// packageImports returns the imports of the non-test files in dir, each
// with a file that has it.
func packageImports(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[p] = f
		}
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return out
}
