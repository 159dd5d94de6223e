package config

import (
	"strings"
	"testing"
)

// TestRejected: every check, with the text the user sees. Each want starts
// with "test.toml:LINE: key" when the key is in the file.
func TestRejected(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n")
	notPEM := writeFile(t, dir, "ca.pem", "not a certificate\n")
	long := "/" + strings.Repeat("x", 120)
	tests := []struct{ name, text, want string }{
		// Decoding.
		{"unknown top-level key", "stat_dir = \"/x\"\n", "test.toml:1: stat_dir: unknown key"},
		{"unknown key in a table", "[queue]\npath = \"q\"\nsize = 1\n", "test.toml:3: queue.size: unknown key"},
		{"unknown table", "[relay.oauth2]\nuser = \"u\"\n", "test.toml:1: relay.oauth2: unknown key"},
		{"unknown dotted key", "relay.prot = 1\n", "test.toml:1: relay.prot: unknown key"},
		{"unknown key in an inline table", "[relay]\ntls = { servername = \"a.example\", bogus = 1 }\n", "test.toml:2: relay.tls.bogus: unknown key"},
		{"upper-case key", "[log]\nLevel = \"info\"\n", "test.toml:2: log.Level: unknown key (keys are lower case)"},
		{"string for integer", "[delivery]\nworkers = \"4\"\n", "test.toml:2: delivery.workers: expected integer, found string"},
		{"integer for string", "[log]\nlevel = 1\n", "test.toml:2: log.level: expected string, found integer"},
		{"string for boolean", "[relay]\nsecure = \"yes\"\n", "test.toml:2: relay.secure: expected boolean, found string"},
		{"float for integer", "[relay]\nport = 25.0\n", "test.toml:2: relay.port: expected integer, found float"},
		{"value for table", "relay = \"smtp://x\"\n", "test.toml:1: relay: expected a table, found string"},
		{"string for array", "[submission]\nlisten = \"127.0.0.1:25\"\n", "test.toml:2: submission.listen: expected array, found string"},
		{"table for duration", "[retry]\nmax_interval = { h = 1 }\n", "test.toml:2: retry.max_interval: expected a single value, found table"},
		{"syntax", "[relay\n", "test.toml:2: expected '.' or ']' to end table name"},
		{"backslash at the end", "[log]\nlevel = \"\\", "test.toml:2: log.level: invalid escape"},
		{"duplicate key", "[log]\nlevel = \"info\"\nlevel = \"warn\"\n", "test.toml:3: "},
		{"bad duration", "[relay]\ngreeting_timeout = \"30\"\n", "test.toml:2: relay.greeting_timeout: \"30\" is not a duration"},
		{"bad size", "[queue]\nmax_size = \"1.5GiB\"\n", "test.toml:2: queue.max_size: \"1.5GiB\" is not a size"},
		{"negative size", "[queue]\nmax_size = -1\n", "test.toml:2: queue.max_size: -1 is negative"},
		{"negative min_free", "[queue]\nmin_free = -1\n", "test.toml:2: queue.min_free: -1 is negative"},
		{"bad mode", "[submission]\nsocket_mode = \"rw-rw----\"\n", "test.toml:2: submission.socket_mode: \"rw-rw----\" is not an octal mode"},
		{"setuid mode", "[submission]\nsocket_mode = \"4777\"\n", "test.toml:2: submission.socket_mode: \"4777\" has bits beyond 0777"},

		// Paths and sockets.
		{"empty queue path", "[queue]\npath = \"\"\n", "test.toml:2: queue.path: must not be empty"},
		{"empty socket", "[submission]\nsocket = \"\"\n", "test.toml:2: submission.socket: must not be empty"},
		{"empty maildrop", "[submission]\nmaildrop = \"\"\n", "test.toml:2: submission.maildrop: must not be empty"},
		{"empty control socket", "[control]\nsocket = \"\"\n", "test.toml:2: control.socket: must not be empty"},
		{"socket path too long", "[control]\nsocket = \"" + long + "\"\n", "test.toml:2: control.socket: " + long + " is 121 bytes long; a unix socket path can have at most 107"},
		{"long state dir", "state_dir = \"" + long + "\"\n", "test.toml: submission.socket: " + long + "/submit.sock is 133 bytes long"},
		{"same path twice", "[queue]\npath = \"maildrop\"\n", "test.toml: submission.maildrop: "},

		// [metrics].
		{"metrics on a public address", "[metrics]\nlisten = \"0.0.0.0:9587\"\n", "test.toml:2: metrics.listen: \"0.0.0.0:9587\" is not a loopback address (127.0.0.1, [::1] or localhost); set metrics.allow_remote = true"},
		{"metrics without a port", "[metrics]\nlisten = \"127.0.0.1\"\n", "test.toml:2: metrics.listen: \"127.0.0.1\" is not host:port"},
		{"metrics port out of range", "[metrics]\nlisten = \"127.0.0.1:70000\"\n", "test.toml:2: metrics.listen: \"127.0.0.1:70000\": 70000 is not a port (0-65535)"},
		{"allow_remote alone", "[metrics]\nallow_remote = true\n", "test.toml:2: metrics.allow_remote: is only used with metrics.listen"},

		// [submission].
		{"no such group", "[submission]\nsocket_group = \"relayq-no-such-group\"\n", "test.toml:2: submission.socket_group: no group \"relayq-no-such-group\""},
		{"listen not host:port", "[submission]\nlisten = [\"127.0.0.1\"]\n", "test.toml:2: submission.listen: \"127.0.0.1\" is not host:port"},
		{"listen bad port", "[submission]\nlisten = [\"127.0.0.1:smtp\"]\n", "test.toml:2: submission.listen: \"127.0.0.1:smtp\": smtp is not a port"},
		{"listen on every address", "[submission]\nlisten = [\":25\"]\n", "test.toml:2: submission.listen: \":25\" is not a loopback address"},
		{"listen on a public address", "[submission]\nlisten = [\"127.0.0.1:25\", \"192.0.2.1:25\"]\n", "submission.listen: \"192.0.2.1:25\" is not a loopback address"},
		{"zero message size", "[submission]\nmax_message_size = 0\n", "test.toml:2: submission.max_message_size: must be greater than 0"},
		{"zero recipients", "[submission]\nmax_recipients = 0\n", "test.toml:2: submission.max_recipients: 0 must be at least 1"},
		{"bad hostname", "[submission]\nhostname = \"a b\"\n", "test.toml:2: submission.hostname: \"a b\" is not a host name"},

		// [rewrite], [aliases], [defaults].
		{"bad rewrite domain", "[rewrite]\ndomain = \"a b\"\n", "test.toml:2: rewrite.domain: \"a b\" is not a domain name"},
		{"bad envelope_from", "[rewrite]\nenvelope_from = \"noreply\"\n", "test.toml:2: rewrite.envelope_from: \"noreply\" is not an address (local@domain)"},
		{"bad when", "[rewrite]\nfrom_header_when = \"sometimes\"\n", "test.toml:2: rewrite.from_header_when: \"sometimes\" is not one of local, always"},
		{"pipe alias", "[aliases]\nroot = \"ops@example.com\"\nbackup = \"|/usr/bin/backup\"\n", "test.toml:3: aliases.backup: pipe target \"|/usr/bin/backup\" refused: relayq never delivers locally"},
		{"file alias in a list", "[aliases]\nlog = [\"a@example.com\", \"/var/log/x\"]\n", "test.toml:2: aliases.log: file target \"/var/log/x\" refused"},
		{"include alias", "[aliases]\nlist = \":include:/etc/list\"\n", "test.toml:2: aliases.list: \":include:/etc/list\" refused"},
		{"alias not a string", "[aliases]\nroot = 1\n", "test.toml:2: aliases.root: must be an address or a list of addresses"},
		{"bad unknown", "[aliases]\nunknown = \"bounce\"\n", "test.toml:2: aliases.unknown: \"bounce\" is not one of qualify, refuse"},
		{"bad admin_address", "[aliases]\nadmin_address = \"root\"\n", "test.toml:2: aliases.admin_address: \"root\" is not an address"},
		{"bad default header name", "[defaults.headers]\n\"List Unsubscribe\" = \"x\"\n", "defaults.headers.List Unsubscribe: \"List Unsubscribe\" is not a header field name"},
		{"two-line default", "[defaults]\nfrom = \"a@example.com\\r\\nBcc: x@example.com\"\n", "test.toml:2: defaults.from: must be one line"},

		// [delivery], [retry], [log].
		{"no workers", "[delivery]\nworkers = 0\n", "test.toml:2: delivery.workers: 0 must be at least 1"},
		{"zero lease", "[delivery]\nlease_timeout = \"0s\"\n", "test.toml:2: delivery.lease_timeout: 0s must be longer than 0"},
		{"zero initial interval", "[retry]\ninitial_interval = \"0s\"\n", "test.toml:2: retry.initial_interval: 0s must be longer than 0"},
		{"multiplier below 1", "[retry]\nmultiplier = 0.9\n", "test.toml:2: retry.multiplier: 0.9 must be a number of at least 1"},
		{"multiplier nan", "[retry]\nmultiplier = nan\n", "test.toml:2: retry.multiplier: NaN must be"},
		{"multiplier inf", "[retry]\nmultiplier = inf\n", "test.toml:2: retry.multiplier: +Inf must be"},
		{"max interval below initial", "[retry]\nmax_interval = \"1m\"\n", "test.toml:2: retry.max_interval: 1m is shorter than retry.initial_interval (5m)"},
		{"zero lifetime", "[retry]\nmax_lifetime = \"0s\"\n", "test.toml:2: retry.max_lifetime: 0s must be longer than 0"},
		{"log level", "[log]\nlevel = \"trace\"\n", "test.toml:2: log.level: \"trace\" is not one of debug, info, warn, error"},
		{"log format", "[log]\nformat = \"logfmt\"\n", "test.toml:2: log.format: \"logfmt\" is not one of text, json"},

		// [relay]: where.
		{"port 0", "[relay]\nport = 0\n", "test.toml:2: relay.port: 0 is not a port (1-65535)"},
		{"port too large", "[relay]\nport = 70000\n", "test.toml:2: relay.port: 70000 is not a port (1-65535)"},
		{"empty host", "[relay]\nhost = \"\"\n", "test.toml:2: relay.host: \"\" is not a host name or IP address"},
		{"host with a port", "[relay]\nhost = \"mail.example.com:25\"\n", "test.toml:2: relay.host: \"mail.example.com:25\" is not a host name"},
		{"socket without lmtp", "[relay]\nsocket = \"/run/lmtp\"\n", "test.toml:2: relay.socket: a unix socket relay speaks LMTP"},
		{"relative socket", "[relay]\nlmtp = true\nsocket = \"run/lmtp\"\n", "test.toml:3: relay.socket: \"run/lmtp\" is not an absolute path"},
		{"socket and host", "[relay]\nlmtp = true\nsocket = \"/run/lmtp\"\nhost = \"h.example\"\n", "test.toml:4: relay.host: is set together with relay.socket"},
		{"socket url and port", "[relay]\nurl = \"lmtp+unix:///run/lmtp\"\nport = 24\n", "test.toml:3: relay.port: is set together with relay.url"},
		{"secure socket", "[relay]\nlmtp = true\nsocket = \"/run/lmtp\"\nsecure = true\n", "test.toml:4: relay.secure: TLS from the first byte (secure) is not supported on a unix socket (relay.socket)"},
		{"bad name", "[relay]\nname = \"a\\r\\nQUIT\"\n", "test.toml:2: relay.name: \"a\\r\\nQUIT\" is not a host name or address literal"},
		{"zero connection timeout", "[relay]\nconnection_timeout = \"0s\"\n", "test.toml:2: relay.connection_timeout: 0s must be longer than 0"},
		{"zero greeting timeout", "[relay]\ngreeting_timeout = \"0s\"\n", "test.toml:2: relay.greeting_timeout: 0s must be longer than 0"},
		{"zero socket timeout", "[relay]\nsocket_timeout = \"0s\"\n", "test.toml:2: relay.socket_timeout: 0s must be longer than 0"},
		{"no connections", "[relay]\nmax_connections = 0\n", "test.toml:2: relay.max_connections: 0 must be at least 1"},
		{"no intake connections", "[submission]\nmax_connections = 0\n", "test.toml:2: submission.max_connections: 0 must be at least 1"},
		{"no intake connections per user", "[submission]\nmax_connections_per_user = 0\n", "test.toml:2: submission.max_connections_per_user: 0 must be at least 1"},
		{"memory below the message size", "[submission]\nmax_message_size = \"2MiB\"\nmax_memory = \"1MiB\"\n", "test.toml:3: submission.max_memory: 1MiB is less than submission.max_message_size (2MiB); 0 means no cap"},
		{"zero intake idle timeout", "[submission]\nidle_timeout = \"0s\"\n", "test.toml:2: submission.idle_timeout: 0s must be longer than 0"},
		{"zero intake read timeout", "[submission]\nread_timeout = \"0s\"\n", "test.toml:2: submission.read_timeout: 0s must be at least 1s"},
		{"negative intake read timeout", "[submission]\nhostname = \"h.example\"\nread_timeout = \"-5m\"\n", "test.toml:3: submission.read_timeout: \"-5m\" is negative"},
		{"intake read timeout under a second", "[submission]\nread_timeout = \"999ms\"\n", "test.toml:2: submission.read_timeout: 999ms must be at least 1s"},
		{"intake read timeout not a duration", "[submission]\nread_timeout = \"300\"\n", "test.toml:2: submission.read_timeout: \"300\" is not a duration"},
		{"no messages", "[relay]\nmax_messages = 0\n", "test.toml:2: relay.max_messages: 0 must be at least 1"},
		{"no connections in the url", "[relay]\nurl = \"smtp://h.example?max_connections=0\"\n", "test.toml:2: relay.url: 0 must be at least 1"},
		{"zero idle timeout", "[relay]\nidle_timeout = \"0s\"\n", "test.toml:2: relay.idle_timeout: 0s must be longer than 0"},
		{"zero idle check", "[relay]\nidle_check = \"0s\"\n", "test.toml:2: relay.idle_check: 0s must be longer than 0"},
		{"negative rate limit", "[relay]\nrate_limit = -1\n", "test.toml:2: relay.rate_limit: -1 must be at least 0"},
		{"zero rate delta", "[relay]\nrate_limit = 10\nrate_delta = \"0s\"\n", "test.toml:3: relay.rate_delta: 0s must be longer than 0"},
		{"zero rate delta in the url", "[relay]\nurl = \"smtp://h.example?rate_limit=5&rate_delta=0s\"\n", "test.toml:2: relay.url: 0s must be longer than 0"},
		{"pool not a bool", "[relay]\npool = \"yes\"\n", "relay.pool"},

		// [relay.auth].
		{"pass and pass_file", "[relay.auth]\nuser = \"u\"\npass = \"p\"\npass_file = \"/p\"\n", "test.toml:4: relay.auth.pass_file: is set together with relay.auth.pass"},
		{"url pass and pass_file", "[relay]\nurl = \"smtp://u:p@h.example\"\n[relay.auth]\npass_file = \"/p\"\n", "test.toml:4: relay.auth.pass_file: is set together with relay.url"},
		{"relative pass_file", "[relay.auth]\nuser = \"u\"\npass_file = \"pass\"\n", "test.toml:3: relay.auth.pass_file: \"pass\" is not an absolute path"},
		{"missing pass_file", "[relay.auth]\nuser = \"u\"\npass_file = \"/nonexistent/pass\"\n", "test.toml:3: relay.auth.pass_file: open /nonexistent/pass: no such file or directory"},
		{"empty pass_file", "[relay.auth]\nuser = \"u\"\npass_file = \"" + empty + "\"\n", "test.toml:3: relay.auth.pass_file: " + empty + " is empty"},
		{"pass without user", "[relay.auth]\npass = \"p\"\n", "test.toml:2: relay.auth.pass: is set but relay.auth.user is not"},
		{"pass_file without user", "[relay.auth]\npass_file = \"" + empty + "\"\n", "relay.auth.pass_file: "},
		{"user without pass", "[relay.auth]\nuser = \"u\"\n", "test.toml:2: relay.auth.user: user \"u\" has no password: set relay.auth.pass or relay.auth.pass_file"},
		{"url user without pass", "[relay]\nurl = \"smtp://u@h.example\"\n", "test.toml:2: relay.url: user \"u\" has no password"},
		{"insecure auth to a remote relay", "[relay]\nhost = \"mail.example.com\"\n[relay.auth]\nallow_insecure = true\n", "test.toml:4: relay.auth.allow_insecure: is only allowed for a loopback or unix-socket relay"},
		{"auth with ignore_tls", "[relay.auth]\nuser = \"u\"\npass = \"p\"\n[relay.tls]\nignore_tls = true\n", "test.toml:5: relay.tls.ignore_tls: would send the password of relay.auth.user in clear"},

		// [relay.tls].
		{"require and ignore", "[relay.tls]\nrequire_tls = true\nignore_tls = true\n", "test.toml:2: relay.tls.require_tls: is true, and so is relay.tls.ignore_tls"},
		{"secure and ignore", "[relay]\nsecure = true\n[relay.tls]\nignore_tls = true\n", "test.toml:4: relay.tls.ignore_tls: contradicts relay.secure"},
		{"smtps and ignore", "[relay]\nurl = \"smtps://h.example\"\n[relay.tls]\nignore_tls = true\n", "test.toml:4: relay.tls.ignore_tls: contradicts relay.url"},
		{"bad servername", "[relay.tls]\nservername = \"a b\"\n", "test.toml:2: relay.tls.servername: \"a b\" is not a host name"},
		{"relative ca_file", "[relay.tls]\nca_file = \"ca.pem\"\n", "test.toml:2: relay.tls.ca_file: \"ca.pem\" is not an absolute path"},
		{"missing ca_file", "[relay.tls]\nca_file = \"/nonexistent/ca.pem\"\n", "test.toml:2: relay.tls.ca_file: open /nonexistent/ca.pem: no such file or directory"},
		{"ca_file without a certificate", "[relay.tls]\nca_file = \"" + notPEM + "\"\n", "test.toml:2: relay.tls.ca_file: " + notPEM + " holds no PEM certificate"},
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

// TestAccepted: values at the edges of what is allowed.
func TestAccepted(t *testing.T) {
	dir := t.TempDir()
	pass := writeFile(t, dir, "pass", "p\n")
	tests := []struct{ name, text string }{
		{"nothing", ""},
		{"the example", string(exampleConfig)},
		{"loopback listeners", "[submission]\nlisten = [\"127.0.0.1:25\", \"[::1]:25\", \"localhost:2525\", \"127.0.0.1:0\"]\n"},
		{"modes", "[submission]\nsocket_mode = \"660\"\n"},
		{"0o mode", "[submission]\nsocket_mode = \"0o600\"\n"},
		{"size in bytes", "[submission]\nmax_message_size = 1048576\n"},
		{"size in MB", "[submission]\nmax_message_size = \"10 MB\"\n"},
		{"no memory cap", "[submission]\nmax_memory = 0\n"},
		{"memory default follows a large message size", "[submission]\nmax_message_size = \"300MiB\"\n"},
		{"numeric group", "[submission]\nsocket_group = \"4242\"\n"},
		{"address literal name", "[relay]\nname = \"[192.0.2.1]\"\n"},
		{"ipv6 literal name", "[relay]\nname = \"[IPv6:2001:db8::1]\"\n"},
		{"ip host with servername", "[relay]\nhost = \"192.0.2.1\"\n[relay.tls]\nservername = \"smtp.example.com\"\n"},
		{"insecure auth on loopback", "[relay]\nurl = \"smtp://u:p@127.0.0.1:25\"\n[relay.auth]\nallow_insecure = true\n[relay.tls]\nignore_tls = true\n"},
		{"insecure auth on a socket", "[relay]\nurl = \"lmtp+unix:///run/lmtp\"\n[relay.auth]\nuser = \"u\"\npass_file = \"" + pass + "\"\nallow_insecure = true\n"},
		{"require_tls on smtps", "[relay]\nurl = \"smtps://h.example\"\n[relay.tls]\nrequire_tls = true\n"},
		{"integer multiplier", "[retry]\nmultiplier = 1\n"},
		{"equal intervals", "[retry]\ninitial_interval = \"1h\"\nmax_interval = \"1h\"\n"},
		{"no shutdown wait", "[delivery]\nshutdown_timeout = \"0s\"\n"},
		{"metrics on loopback", "[metrics]\nlisten = \"127.0.0.1:9587\"\n"},
		{"metrics on any port", "[metrics]\nlisten = \"[::1]:0\"\n"},
		{"metrics to other hosts", "[metrics]\nlisten = \"0.0.0.0:9587\"\nallow_remote = true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustParse(t, testLoader(t), tt.text)
		})
	}
}

// TestErrorsAreCollected: one run reports every problem, each on its line.
func TestErrorsAreCollected(t *testing.T) {
	_, err := testLoader(t).parse([]byte("[delivery]\nworkers = 0\n[log]\nlevel = \"x\"\nformat = \"y\"\n"), "c.toml")
	want := "c.toml:2: delivery.workers: 0 must be at least 1\n" +
		"c.toml:4: log.level: \"x\" is not one of debug, info, warn, error\n" +
		"c.toml:5: log.format: \"y\" is not one of text, json"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}
