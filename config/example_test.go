package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// commentedDefault is a line of config.toml.example that shows a key commented
// out: "# port = 25".
var commentedDefault = regexp.MustCompile(`^# ([a-z_]+) = (.+)$`)

// exampleValues are the commented keys of config.toml.example whose value
// is an example (the text above says so, or it names a file, a group or a
// secret), not the default. Every other commented key must be the default:
// uncommenting it alone changes nothing. (Uncommenting "# port = 587" used
// to make the file invalid: the url above it says 25.)
var exampleValues = map[string]bool{
	"submission.socket_group": true, "submission.listen": true, "submission.hostname": true,
	"relay.socket": true, "relay.name": true, "relay.local_address": true, "relay.proxy": true,
	"relay.auth.user": true, "relay.auth.pass": true, "relay.auth.pass_file": true, "relay.auth.pass_env": true,
	"relay.auth.access_token": true, "relay.auth.access_token_file": true, "relay.auth.client_id": true,
	"relay.auth.client_secret": true, "relay.auth.client_secret_file": true, "relay.auth.refresh_token": true,
	"relay.auth.refresh_token_file": true, "relay.auth.token_url": true, "relay.auth.scopes": true,
	"relay.tls.servername": true, "relay.tls.ca_file": true, "relay.tls.cert_file": true, "relay.tls.key_file": true,
	"limits.rule": true, "notify.postmaster_address": true,
	"rewrite.domain": true, "rewrite.masquerade_domains": true, "rewrite.envelope_from": true, "rewrite.from_header": true,
	"aliases.aliases_file": true, "aliases.admin_address": true, "defaults.from": true, "defaults.reply_to": true, "defaults.headers": true,
	"api.token_file": true, "api.file_roots": true,
}

// TestExampleCommentedDefaults uncomments each commented key of
// config.toml.example in turn: a default must leave the config as it was
// (so that the file never contradicts itself), and only the keys listed in
// exampleValues may change it.
func TestExampleCommentedDefaults(t *testing.T) {
	l := testLoader(t)
	l.skipSecrets = true // the example's files do not exist here
	base := mustParse(t, l, string(exampleConfig))
	lines := strings.Split(string(exampleConfig), "\n")
	section, seen := "", 0
	for i, line := range lines {
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]") + "."
		}
		m := commentedDefault.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		seen++
		key := section + m[1]
		edited := append([]string{}, lines...)
		edited[i] = strings.TrimPrefix(line, "# ")
		cfg, err := l.parse([]byte(strings.Join(edited, "\n")), "config.toml.example")
		same := err == nil && reflect.DeepEqual(cfg, base)
		switch {
		case exampleValues[key] && same:
			t.Errorf("line %d: %s: listed as an example value, but it is the default; take it out of exampleValues", i+1, key)
		case !exampleValues[key] && !same:
			t.Errorf("line %d: uncommenting %q changes the config (err %v): a commented default must be the default, or the text must call it an example (and exampleValues list it)", i+1, line, err)
		}
	}
	if seen < 10 {
		t.Fatalf("found %d commented keys; is the pattern out of date?", seen)
	}
}

// TestExampleSizesAreStrings: config.toml.example writes every size one
// way, as a string with a unit ("25MiB", "0"), as its header says (it had
// max_size = 0 next to queued_bytes = "0").
func TestExampleSizesAreStrings(t *testing.T) {
	sizes := map[string]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, prefix string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := prefix + f.Tag.Get("toml")
			switch {
			case f.Type == reflect.TypeFor[ByteSize]():
				sizes[key] = true
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	if len(sizes) < 3 {
		t.Fatalf("found %d size keys in Config", len(sizes))
	}
	section, seen := "", 0
	for i, line := range strings.Split(string(exampleConfig), "\n") {
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]") + "."
		}
		key, value, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok || !sizes[section+key] {
			continue
		}
		seen++
		if !strings.HasPrefix(value, `"`) {
			t.Errorf("line %d: %s: the size %s is not written as a string like \"25MiB\"", i+1, section+key, value)
		}
	}
	if seen < len(sizes) {
		t.Errorf("found %d of the %d size keys in the example", seen, len(sizes))
	}
}

// TestSocketUnitMatchesDefaults: systemd/relayq.socket listens where the
// daemon of a default config (the package's /etc/relayq/config.toml, or
// config.toml.example copied there, run
// as root or as the relayq user of the unit) and every sendmail look for
// the submission socket. A mismatch made the activated daemon refuse to
// start (a socket it was given that is not its own).
func TestSocketUnitMatchesDefaults(t *testing.T) {
	unit, err := os.ReadFile("../systemd/relayq.socket")
	if err != nil {
		t.Fatal(err)
	}
	var listen string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ListenStream="); ok && strings.HasPrefix(v, "/") {
			listen = v
		}
	}
	if system := newLoader(nil).stateDir; filepath.Dir(listen) != system {
		t.Fatalf("relayq.socket listens on %s, outside the system state directory %s", listen, system)
	}
	// The system state directory, as it is once the package is installed.
	system := t.TempDir()
	host := func() (string, error) { return "host.example", nil }
	for _, l := range []loader{
		{getenv: envMap{}.get, euid: 0, stateDir: system, hostname: host, homeDir: func() string { return "/root" }, writable: func(string) bool { return true }},
		{getenv: envMap{}.get, euid: 998, stateDir: system, hostname: host, homeDir: func() string { return system }, writable: func(string) bool { return true }},
		{getenv: envMap{"HOME": t.TempDir()}.get, euid: 1000, stateDir: system, hostname: host, homeDir: func() string { return "" }, writable: func(string) bool { return false }, client: true, skipSecrets: true},
	} {
		for name, data := range map[string][]byte{"packaging/config.toml": embeddedConfig, "config.toml.example": exampleConfig} {
			cfg, err := l.parse(data, name)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(system, filepath.Base(listen)); cfg.Submission.Socket != want {
				t.Errorf("%s, uid %d (client %v): [submission] socket %s, want %s as relayq.socket's %s", name, l.euid, l.client, cfg.Submission.Socket, want, listen)
			}
		}
	}
}

// TestPackagedConfigIsTheExample: packaging/config.toml, the package's
// /etc/relayq/config.toml and the config used when there is no file, loads
// to the same Config as config.toml.example (for the daemon and for a
// client), and each key it sets is one that differs from the defaults:
// without it the config changes. (It used to be config.toml.example itself,
// whose 72 keys sendmail decoded at every message.)
func TestPackagedConfigIsTheExample(t *testing.T) {
	daemon := testLoader(t)
	client := testLoader(t)
	client.client, client.skipSecrets = true, true
	for _, l := range []loader{daemon, client} {
		example := mustParse(t, l, string(exampleConfig))
		packaged := mustParse(t, l, string(embeddedConfig))
		if !reflect.DeepEqual(packaged, example) {
			t.Errorf("client %v: packaging/config.toml loads differently from config.toml.example:\npackaged: %+v\nexample:  %+v", l.client, packaged, example)
		}
	}
	lines := strings.Split(string(embeddedConfig), "\n")
	base := mustParse(t, daemon, string(embeddedConfig))
	keys := 0
	for i, line := range lines {
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		keys++
		without := slices.Delete(slices.Clone(lines), i, i+1)
		cfg, err := daemon.parse([]byte(strings.Join(without, "\n")), "packaging/config.toml")
		if err == nil && reflect.DeepEqual(cfg, base) {
			t.Errorf("packaging/config.toml line %d %q sets a default: leave it to config.toml.example", i+1, line)
		}
	}
	if keys == 0 {
		t.Error("packaging/config.toml sets no key; is the pattern out of date?")
	}
}
