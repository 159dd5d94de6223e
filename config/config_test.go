package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"relayq"
)

// testLoader is a loader that sees nothing of the machine it runs on: a
// non-root user whose home is a temp dir, no /var/lib/relayq, a fixed host name.
func testLoader(t *testing.T) loader {
	t.Helper()
	home := t.TempDir()
	return loader{
		getenv:   envMap{"HOME": home}.get,
		euid:     1000,
		stateDir: filepath.Join(t.TempDir(), "absent"),
		hostname: func() (string, error) { return "host.example", nil },
		homeDir:  func() string { return "" },
	}
}

type envMap map[string]string

func (e envMap) get(k string) string { return e[k] }

func mustParse(t *testing.T, l loader, text string) *Config {
	t.Helper()
	cfg, err := l.parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("parse:\n%s\nerror: %v", text, err)
	}
	return cfg
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadConfigs runs the table that the end-to-end test also runs against
// `relayq serve -c FILE`: each NN-name.toml must fail with an error holding
// the text of NN-name.expected.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("../tests/testdata/badconfig/*.toml")
	if err != nil || len(files) < 10 {
		t.Fatalf("want at least 10 bad configs, found %d (%v)", len(files), err)
	}
	expected, _ := filepath.Glob("../tests/testdata/badconfig/*.expected")
	if len(expected) != len(files) {
		t.Errorf("%d .toml files but %d .expected files", len(files), len(expected))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".toml") + ".expected")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(f)
			if err == nil {
				t.Fatalf("Load(%s) succeeded", f)
			}
			if !errors.As(err, new(*Error)) {
				t.Errorf("error is %T, not *Error", err)
			}
			if got, want := err.Error(), strings.TrimSpace(string(want)); !strings.Contains(got, want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", got, want)
			}
		})
	}
}

func TestDefaultIsTheExample(t *testing.T) {
	l := testLoader(t)
	example := mustParse(t, l, string(exampleConfig))
	empty := mustParse(t, l, "")
	// The example sets every key to its default, except that it points the
	// relay at a local mail server.
	if got, want := example.Relay.URL, "smtp://localhost:25"; got != want {
		t.Errorf("example relay.url = %q, want %q", got, want)
	}
	if example.Relay.Port != 25 || example.Relay.Host != "localhost" || example.Relay.Auth.User != "" {
		t.Errorf("example relay = %s:%d user %q, want localhost:25 without login",
			example.Relay.Host, example.Relay.Port, example.Relay.Auth.User)
	}
	example.Relay.URL, example.Relay.Port = "", 587
	if !reflect.DeepEqual(example, empty) {
		t.Errorf("example differs from the defaults:\nexample: %+v\ndefaults: %+v", example, empty)
	}
	state := filepath.Join(l.getenv("HOME"), ".local/state/relayq")
	if empty.StateDir != state || empty.Queue.Path != state+"/queue.db" {
		t.Errorf("state_dir, queue.path = %s, %s; want %s, %s/queue.db", empty.StateDir, empty.Queue.Path, state, state)
	}
	if Default() == nil {
		t.Fatal("Default() = nil")
	}
}

func TestExampleDecodesCompletely(t *testing.T) {
	md, err := toml.Decode(string(exampleConfig), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("config.toml.example has undecoded keys: %v", u)
	}
}

// commentedKey matches a key or table header that the example shows commented
// out: "# port = 587", "# [relay.auth]".
var commentedKey = regexp.MustCompile(`(?m)^# ?(\[[a-z_.]+\]|[a-z_]+ = .*)$`)

// TestExampleDocumentsEveryKey uncomments every "# key = value" line of the
// example and checks that the result names every field of Config, and
// nothing else.
func TestExampleDocumentsEveryKey(t *testing.T) {
	uncommented := commentedKey.ReplaceAllString(string(exampleConfig), "$1")
	md, err := toml.Decode(uncommented, defaults())
	if err != nil {
		t.Fatalf("example with every key uncommented: %v\n%s", err, uncommented)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("example with every key uncommented has unknown keys: %v", u)
	}
	keys := tomlKeys(reflect.TypeFor[Config](), nil)
	if len(keys) < 40 {
		t.Fatalf("found only %d keys in Config", len(keys))
	}
	for _, k := range keys {
		if !md.IsDefined(k...) {
			t.Errorf("config.toml.example does not document %s", strings.Join(k, "."))
		}
	}
}

// tomlKeys lists every key of struct type t, tables included, by toml tag.
func tomlKeys(t reflect.Type, prefix []string) [][]string {
	var keys [][]string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("toml") == "-" {
			continue
		}
		if f.Anonymous && f.Tag.Get("toml") == "" {
			keys = append(keys, tomlKeys(f.Type, prefix)...) // inlined, as toml decodes it
			continue
		}
		key := append(append([]string(nil), prefix...), f.Tag.Get("toml"))
		if !f.IsExported() || f.Tag.Get("toml") == "-" {
			continue // [aliases]' own entries and what decoding keeps aside
		}
		if f.Tag.Get("toml") == "" {
			panic("field " + f.Name + " has no toml tag")
		}
		keys = append(keys, key)
		if f.Type.Kind() == reflect.Struct && !isText(reflect.New(f.Type).Elem()) {
			keys = append(keys, tomlKeys(f.Type, key)...)
		}
	}
	return keys
}

func TestFindPrecedence(t *testing.T) {
	dir := t.TempDir()
	flag := writeFile(t, dir, "flag.toml", "[log]\nlevel = \"debug\"\n")
	env := writeFile(t, dir, "env.toml", "[log]\nlevel = \"warn\"\n")
	system := writeFile(t, dir, "system.toml", "[log]\nlevel = \"error\"\n")
	absent := filepath.Join(dir, "absent.toml")
	tests := []struct {
		name, flag, env, system string
		wantSource, wantLevel   string
	}{
		{"flag wins", flag, env, system, flag, "debug"},
		{"then $RELAYQ_CONFIG", "", env, system, env, "warn"},
		{"then the system file", "", "", system, system, "error"},
		{"then the embedded default", "", "", absent, "embedded default", "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoader(t)
			l.getenv = envMap{"RELAYQ_CONFIG": tt.env, "HOME": dir}.get
			cfg, source, err := l.find(tt.flag, tt.system)
			if err != nil {
				t.Fatal(err)
			}
			if source != tt.wantSource || cfg.Log.Level != tt.wantLevel {
				t.Errorf("source %q level %q, want %q %q", source, cfg.Log.Level, tt.wantSource, tt.wantLevel)
			}
		})
	}
	t.Run("a named file that is missing is an error", func(t *testing.T) {
		_, source, err := testLoader(t).find(absent, system)
		if err == nil || source != absent || !strings.Contains(err.Error(), absent) {
			t.Errorf("find(%s) = source %q, err %v; want an error naming the file", absent, source, err)
		}
	})
}

// TestFindAgainRefusesAHalfWrittenFile: a reload refuses an empty file
// (Find takes it: every key at its default) and the embedded default in
// place of a system file the daemon started with that is gone; a new
// system file where the daemon started without one is taken, and a file
// with content is read as Find reads it.
func TestFindAgainRefusesAHalfWrittenFile(t *testing.T) {
	dir := t.TempDir()
	system := filepath.Join(dir, "system.toml")
	reloader := func() loader {
		l := testLoader(t)
		l.reload = true
		return l
	}
	writeFile(t, dir, "system.toml", " \n\n")
	if cfg, _, err := testLoader(t).find("", system); err != nil || cfg.Log.Level != "info" {
		t.Fatalf("find of an empty file: %v, %v; want the defaults (at start an empty file is allowed)", cfg, err)
	}
	if _, source, err := reloader().findAgain("", system, system); err == nil || source != system || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("reload of an empty file: source %q, err %v; want an error saying it is empty", source, err)
	}
	writeFile(t, dir, "system.toml", "[log]\nlevel = \"warn\"\n")
	if cfg, _, err := reloader().findAgain("", system, system); err != nil || cfg.Log.Level != "warn" {
		t.Errorf("reload of a whole file: %v; want it read", err)
	}
	if cfg, source, err := reloader().findAgain("", system, embeddedName); err != nil || source != system || cfg.Log.Level != "warn" {
		t.Errorf("reload that finds a new system file: source %q, err %v; want it taken", source, err)
	}
	if err := os.Remove(system); err != nil {
		t.Fatal(err)
	}
	if _, source, err := reloader().findAgain("", system, system); err == nil || source != system || !strings.Contains(err.Error(), "is gone") {
		t.Errorf("reload after the file relayq started with was removed: source %q, err %v; want an error", source, err)
	}
	if _, source, err := reloader().findAgain("", system, embeddedName); err != nil || source != embeddedName {
		t.Errorf("reload of a daemon that started on the embedded default: source %q, err %v", source, err)
	}
}

// TestReloadWaitsForAFileBeingWritten: an editor truncates the file and
// writes it again, and a reload comes in between, when the file holds a
// prefix that ends at a line break and parses (no [log] yet: defaults).
// The reload waits until the file has settled and takes the whole new
// file.
func TestReloadWaitsForAFileBeingWritten(t *testing.T) {
	dir := t.TempDir()
	system := filepath.Join(dir, "system.toml")
	whole := "[submission]\nmax_recipients = 7\n[log]\nlevel = \"warn\"\n"
	writeFile(t, dir, "system.toml", "[submission]\nmax_recipients = 7\n") // the first write of two
	l := testLoader(t)
	l.reload = true
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, _, err := l.findAgain("", system, system)
		done <- result{cfg, err}
	}()
	time.Sleep(reloadSettle / 10)
	writeFile(t, dir, "system.toml", whole) // the second write
	r := <-done
	if r.err != nil || r.cfg.Log.Level != "warn" || r.cfg.Submission.MaxRecipients != 7 {
		t.Fatalf("reload during the edit: %+v, %v; want the whole new file (log level warn)", r.cfg, r.err)
	}
}

// TestReadSettledRefusesAFileThatKeepsChanging: a file rewritten without
// a pause for longer than the wait allowed is refused, not read half-way.
func TestReadSettledRefusesAFileThatKeepsChanging(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			os.WriteFile(path, []byte(strings.Repeat("# x\n", i%50+1)), 0o644)
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if data, err := readSettled(path, 250*time.Millisecond, 500*time.Millisecond); err == nil {
		t.Fatalf("read %d bytes of a file rewritten every millisecond", len(data))
	}
}

// TestStateDir: where the queue and sockets go when state_dir is empty. A
// user's daemon uses /var/lib/relayq only when it may write there (else
// `relayq serve` as an ordinary user failed with "permission denied"
// whenever the system's relayq was installed); its clients follow it there.
func TestStateDir(t *testing.T) {
	existing := t.TempDir()
	ownHome := t.TempDir()
	own := filepath.Join(ownHome, "relayq")
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	tests := []struct {
		name     string
		stateDir string // the key
		euid     int
		system   string // the system state directory
		writable bool   // whether this user may write in it
		client   bool   // FindForClient
		env      envMap
		want     string
	}{
		{"set in the file", "/srv/relayq", 1000, "/absent", false, false, envMap{"HOME": "/home/u"}, "/srv/relayq"},
		{"relative to the working directory", "state", 1000, "/absent", false, false, nil, filepath.Join(cwd, "state")},
		{"root uses the system dir", "", 0, "/absent", false, false, envMap{"HOME": "/root"}, "/absent"},
		{"a user who may write in it uses it", "", 1000, existing, true, false, envMap{"HOME": "/home/u"}, existing},
		{"a user who may not uses their own", "", 1000, existing, false, false, envMap{"HOME": "/home/u"}, "/home/u/.local/state/relayq"},
		{"a client uses the system dir", "", 1000, existing, false, true, envMap{"HOME": "/home/u"}, existing},
		{"a client of the user's own daemon uses its dir", "", 1000, existing, false, true, envMap{"XDG_STATE_HOME": ownHome}, own},
		{"a client of a writable system dir uses it", "", 1000, existing, true, true, envMap{"XDG_STATE_HOME": ownHome}, existing},
		{"a client without a system dir uses its own", "", 1000, "/absent", false, true, envMap{"HOME": "/home/u"}, "/home/u/.local/state/relayq"},
		{"else XDG_STATE_HOME", "", 1000, "/absent", false, false, envMap{"XDG_STATE_HOME": "/x", "HOME": "/home/u"}, "/x/relayq"},
		{"a relative XDG_STATE_HOME is ignored", "", 1000, "/absent", false, false, envMap{"XDG_STATE_HOME": "x", "HOME": "/home/u"}, "/home/u/.local/state/relayq"},
		{"else the home from the user database", "", 1000, "/absent", false, false, envMap{}, "/db/home/.local/state/relayq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := loader{euid: tt.euid, stateDir: tt.system, getenv: tt.env.get, homeDir: func() string { return "/db/home" },
				writable: func(string) bool { return tt.writable }, client: tt.client}
			if got := l.stateDirFor(tt.stateDir); got != tt.want {
				t.Errorf("stateDirFor(%q) = %q, want %q", tt.stateDir, got, tt.want)
			}
		})
	}
}

func TestPathsResolveAgainstStateDir(t *testing.T) {
	cfg := mustParse(t, testLoader(t), `
state_dir = "/srv/relayq"
[queue]
path = "/data/queue.db"
[submission]
socket = "sock/submit"
maildrop = "drop"
[control]
socket = "ctl"
`)
	got := []string{cfg.Queue.Path, cfg.Submission.Socket, cfg.Submission.Maildrop, cfg.Control.Socket}
	want := []string{"/data/queue.db", "/srv/relayq/sock/submit", "/srv/relayq/drop", "/srv/relayq/ctl"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths = %q, want %q", got, want)
	}
	if cfg.Submission.Hostname != "host.example" || cfg.Relay.Name != "host.example" {
		t.Errorf("hostname, name = %q, %q; want the machine's host name", cfg.Submission.Hostname, cfg.Relay.Name)
	}
}

func TestLogValueRedactsPassword(t *testing.T) {
	dir := t.TempDir()
	passFile := writeFile(t, dir, "pass", "file-s3cret\n")
	tests := []struct{ name, text, secret string }{
		{"pass", "[relay.auth]\nuser = \"u\"\npass = \"key-s3cret\"\n", "key-s3cret"},
		{"url", "[relay]\nurl = \"smtp://u:url-s3cret@mail.example.com:587\"\n", "url-s3cret"},
		{"escaped url", "[relay]\nurl = \"smtp://u:p%40ss-s3cret@mail.example.com\"\n", "ss-s3cret"},
		{"pass_file", "[relay.auth]\nuser = \"u\"\npass_file = \"" + passFile + "\"\n", "file-s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, testLoader(t), tt.text)
			if cfg.Relay.Auth.Pass == "" {
				t.Fatal("no password loaded")
			}
			for _, h := range []func(*bytes.Buffer) slog.Handler{
				func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
				func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			} {
				var b bytes.Buffer
				slog.New(h(&b)).Info("config", "config", cfg)
				out := b.String()
				if strings.Contains(out, tt.secret) {
					t.Errorf("log shows the password:\n%s", out)
				}
				for _, want := range []string{"relay", "pass", "u", "max_message_size", "25MiB", "socket_mode", "0666"} {
					if !strings.Contains(out, want) {
						t.Errorf("log lacks %q:\n%s", want, out)
					}
				}
			}
		})
	}
}

func TestPassFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ content, want string }{
		{"secret\n", "secret"},
		{"secret\r\n", "secret"},
		{"secret", "secret"},
		{"  spaced secret \n\n", "  spaced secret \n"}, // only one newline is dropped
	}
	for i, tt := range tests {
		p := writeFile(t, dir, "pass"+strconv.Itoa(i), tt.content)
		cfg := mustParse(t, testLoader(t), "[relay.auth]\nuser = \"u\"\npass_file = \""+p+"\"\n")
		if cfg.Relay.Auth.Pass != tt.want {
			t.Errorf("pass_file holding %q: pass = %q, want %q", tt.content, cfg.Relay.Auth.Pass, tt.want)
		}
	}
}

// TestClientSkipsSecrets: `relayq sendmail`, run by any user, must load a
// config whose password and CA files only the daemon can read.
func TestClientSkipsSecrets(t *testing.T) {
	text := "[relay.auth]\nuser = \"u\"\npass_file = \"/nonexistent/pass\"\n[relay.tls]\nca_file = \"/nonexistent/ca.pem\"\n"
	l := testLoader(t)
	if _, err := l.parse([]byte(text), "test.toml"); err == nil {
		t.Fatal("the daemon's loader accepted unreadable pass_file and ca_file")
	}
	l.skipSecrets = true
	cfg := mustParse(t, l, text)
	if cfg.Relay.Auth.Pass != "" {
		t.Errorf("pass = %q, want empty", cfg.Relay.Auth.Pass)
	}
}

func TestSocketGID(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("own group not in the group database: %v", err)
	}
	tests := []struct {
		group string
		want  int
	}{
		{"", -1},
		{"4242", 4242},
		{g.Name, os.Getgid()},
	}
	for _, tt := range tests {
		got, err := SubmissionConfig{SocketGroup: tt.group}.SocketGID()
		if err != nil || got != tt.want {
			t.Errorf("SocketGID(%q) = %d, %v; want %d", tt.group, got, err, tt.want)
		}
	}
	cfg := mustParse(t, testLoader(t), "[submission]\nsocket_group = \""+g.Name+"\"\n")
	if cfg.Submission.SocketGroup != g.Name {
		t.Errorf("socket_group = %q", cfg.Submission.SocketGroup)
	}
}

// TestMinFreeFollowsMessageSize: queue.min_free defaults to twice
// submission.max_message_size, whatever that is set to; set, it is taken
// as it is, 0 included (no headroom).
func TestMinFreeFollowsMessageSize(t *testing.T) {
	l := testLoader(t)
	for _, tc := range []struct {
		text string
		want ByteSize
	}{
		{"", 50 << 20},
		{"[submission]\nmax_message_size = \"1MiB\"\n", 2 << 20},
		{"[queue]\nmin_free = \"3MiB\"\n", 3 << 20},
		{"[queue]\nmin_free = 0\n[submission]\nmax_message_size = \"1MiB\"\n", 0},
	} {
		if got := mustParse(t, l, tc.text).Queue.MinFree; got != tc.want {
			t.Errorf("%q: queue.min_free = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// TestExample: Example is config.toml.example, a copy the caller may change.
func TestExample(t *testing.T) {
	ex := Example()
	if !bytes.Equal(ex, relayq.ExampleConfig) {
		t.Fatal("Example() differs from config.toml.example")
	}
	ex[0] ^= 0xff
	if !bytes.Equal(Example(), relayq.ExampleConfig) {
		t.Error("changing Example()'s result changed the embedded example")
	}
}

// Config.UserDB says whether loading looked anything up in the user or
// group database: relayq-sendmail (no cgo) checks its answer against the C
// library's only then.
func TestUserDBSetWhenLookedUp(t *testing.T) {
	tests := []struct {
		name string
		env  envMap
		text string
		want bool
	}{
		{"state_dir set", envMap{}, `state_dir = "/srv/relayq"`, false},
		{"the home from $HOME", envMap{"HOME": "/home/u"}, ``, false},
		{"the home from the user database", envMap{}, ``, true},
		{"socket_group by gid", envMap{"HOME": "/home/u"}, "[submission]\nsocket_group = \"0\"", false},
		{"socket_group by name", envMap{"HOME": "/home/u"}, "[submission]\nsocket_group = \"root\"", true},
		{"admin_group by gid", envMap{"HOME": "/home/u"}, "[control]\nadmin_group = \"0\"", false},
		{"admin_group by name", envMap{"HOME": "/home/u"}, "[control]\nadmin_group = \"root\"", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoader(t)
			l.getenv = tt.env.get
			l.homeDir = func() string { return "/db/home" }
			if cfg := mustParse(t, l, tt.text); cfg.UserDB != tt.want {
				t.Errorf("UserDB = %v, want %v", cfg.UserDB, tt.want)
			}
		})
	}
}

// TestSubmissionReadTimeout: [submission] read_timeout is 10m unless set;
// a second is the shortest it takes (see the validate table for the
// errors).
func TestSubmissionReadTimeout(t *testing.T) {
	l := testLoader(t)
	if got := mustParse(t, l, "").Submission.ReadTimeout.Duration; got != 10*time.Minute {
		t.Errorf("default read_timeout %v, want 10m", got)
	}
	for text, want := range map[string]time.Duration{
		"[submission]\nread_timeout = \"5m\"\n": 5 * time.Minute,
		"[submission]\nread_timeout = \"1s\"\n": time.Second,
	} {
		if got := mustParse(t, l, text).Submission.ReadTimeout.Duration; got != want {
			t.Errorf("%q: read_timeout %v, want %v", text, got, want)
		}
	}
}
