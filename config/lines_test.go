package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The line matchers answer as the regexps they replace, on every line of
// the example config and of the test configs, and on lines made to tell
// them apart.
func TestLineMatchersAreTheirRegexps(t *testing.T) {
	lines := strings.Split(string(exampleConfig), "\n")
	files, _ := filepath.Glob("testdata/*/*.toml")
	more, _ := filepath.Glob("testdata/*.toml")
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(string(data), "\n")...)
	}
	lines = append(lines, "", " ", "[", "[[", "[[]]", "\t[[ relays ]]", "[[relays]] # x", "[[ relays\t]]x",
		"[[relaysx]]", "[[relays.x]]", "[ [relays]]", "\f[relays.auth]", "[relays .auth]", "[ relays. tls]",
		"[relays]", "#[[relays]]", " # [relays.auth]", "\v[relays.auth]", "[[routes]]", "[routes.policy]",
		"id = 1", " id=1", "id\t= 1", "ids = 1", "id", "id == 2", "\vid = 1", "#id = 1", "x.id = 1", "\r\nid =")
	names := []string{"relays", "routes", "limits.rule", "a+b"}
	keys := []string{"id", "name", "relays", "sender", "recipient_domain", "url", "a.b"}
	header := regexp.MustCompile(`^\s*\[`)
	for _, line := range lines {
		if got, want := isTableHeader(line), header.MatchString(line); got != want || isTableHeader([]byte(line)) != want {
			t.Errorf("isTableHeader(%q) = %v, regexp %v", line, got, want)
		}
		for _, name := range names {
			head := regexp.MustCompile(`^\s*\[\[\s*` + regexp.QuoteMeta(name) + `\s*\]\]`)
			sub := regexp.MustCompile(`^\s*\[\s*` + regexp.QuoteMeta(name) + `\s*\.`)
			if got, want := isArrayHeader(line, name), head.MatchString(line); got != want || isArrayHeader([]byte(line), name) != want {
				t.Errorf("isArrayHeader(%q, %q) = %v, regexp %v", line, name, got, want)
			}
			if got, want := isSubTable(line, name), sub.MatchString(line); got != want {
				t.Errorf("isSubTable(%q, %q) = %v, regexp %v", line, name, got, want)
			}
		}
		for _, key := range keys {
			re := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
			if got, want := setsKey(line, key), re.MatchString(line); got != want {
				t.Errorf("setsKey(%q, %q) = %v, regexp %v", line, key, got, want)
			}
		}
	}
}

// BenchmarkFindForClient is what sendmail's config costs a call: the
// config the package installs in /etc/relayq/config.toml (packaged), and
// config.toml.example there instead (example: every key set, as the
// package installed it before).
func BenchmarkFindForClient(b *testing.B) {
	for _, bc := range []struct {
		name string
		data []byte
	}{{"packaged", embeddedConfig}, {"example", exampleConfig}} {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "config.toml")
			if err := os.WriteFile(path, bc.data, 0o644); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := FindForClient(path, func(string) string { return "" }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
