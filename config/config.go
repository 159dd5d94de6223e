package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"time"

	"github.com/BurntSushi/toml"

	"relayq"
)

// SystemConfigPath is the config file used when neither -c nor
// $RELAYQ_CONFIG names one and the file exists.
const SystemConfigPath = "/etc/relayq/config.toml"

// systemStateDir is the state directory of a system-wide relayq (the one
// systemd's StateDirectory=relayq creates).
const systemStateDir = "/var/lib/relayq"

// embeddedName is the source Find reports for the built-in config.
const embeddedName = "embedded default"

// exampleConfig is config.toml.example, every key with its default and
// what it does; the root package embeds it (go:embed cannot reach "..").
var exampleConfig = relayq.ExampleConfig

// embeddedConfig is the config used when there is no file:
// packaging/config.toml, the package's /etc/relayq/config.toml, which sets
// only the relay's url. It loads to the same Config as config.toml.example
// (TestPackagedConfigIsTheExample), and a client (sendmail, at every
// message) decodes one key instead of 72.
var embeddedConfig = relayq.PackagedConfig

// Example returns config.toml.example, every key with its comment, as
// `relayq help --man 5` renders it into relayq.toml(5).
func Example() []byte { return append([]byte(nil), exampleConfig...) }

// Config is relayq's whole configuration. Every TOML key is the field's toml
// tag; config.toml.example documents each one with its default.
type Config struct {
	// StateDir holds the queue, the sockets and the maildrop. "" picks
	// /var/lib/relayq when running as root or as a user who may write in
	// it, else $XDG_STATE_HOME/relayq or ~/.local/state/relayq (see
	// loader.stateDirFor for clients). Always absolute after loading.
	StateDir   string           `toml:"state_dir"`
	Queue      QueueConfig      `toml:"queue"`
	Submission SubmissionConfig `toml:"submission"`
	Control    ControlConfig    `toml:"control"`
	Relay      RelayConfig      `toml:"relay"`
	// Relays are the [[relays]] tables (routes.go); RelayList adds
	// [relay] as the relay "default".
	Relays []NamedRelay `toml:"relays"`
	// RelayTable is set after loading when [relay] is one of the relays:
	// the file has it, or has no [[relays]].
	RelayTable bool `toml:"-"`
	// UserDB is set after loading when loading looked something up in the
	// system's user or group database: this user's home directory (for
	// the state directory, with $HOME unset), or socket_group or
	// admin_group given by name. relayq-sendmail, which reads those
	// databases without the C library, must then check that its answer
	// is the C library's (cmd/relayq-sendmail/userdb.go).
	UserDB bool `toml:"-"`
	// Routes are the [[routes]] tables, in order (routes.go); each has
	// its Name filled in after loading.
	Routes   []RouteConfig  `toml:"routes"`
	Delivery DeliveryConfig `toml:"delivery"`
	Retry    RetryConfig    `toml:"retry"`
	Log      LogConfig      `toml:"log"`
	Health   HealthConfig   `toml:"health"`
	Metrics  MetricsConfig  `toml:"metrics"`  // metrics.go
	Limits   LimitsConfig   `toml:"limits"`   // limits.go
	Notify   NotifyConfig   `toml:"notify"`   // notify.go
	Rewrite  RewriteConfig  `toml:"rewrite"`  // rewrite.go
	Aliases  AliasesConfig  `toml:"aliases"`  // rewrite.go
	Defaults DefaultsConfig `toml:"defaults"` // rewrite.go
	API      APIConfig      `toml:"api"`      // api.go
}

// QueueConfig is the [queue] table: the bbolt store.
type QueueConfig struct {
	Path    string   `toml:"path"`     // database file; relative to StateDir; default "queue.db"
	MaxSize ByteSize `toml:"max_size"` // largest database size; 0 (default) = unlimited
	// MinFree is the free space kept on the queue's file system, as
	// Postfix's queue_minfree: below it new mail is refused with 452 4.3.1
	// (sendmail exits 75), so that recording deliveries, deleting delivered
	// messages and dead-letter moves always have room. Default: twice
	// submission.max_message_size; 0 keeps none.
	MinFree ByteSize `toml:"min_free"`
	// HistoryRetention is how long the record of a delivered (or dead,
	// or deleted) message is kept for `relayq queue status`; default
	// 168h (7 days); 0 keeps none.
	HistoryRetention Duration `toml:"history_retention"`
	// HistoryMaxSize bounds the room that history takes in the queue
	// file: past it the oldest records go before their retention;
	// default 1 GiB; 0 = no bound.
	HistoryMaxSize ByteSize `toml:"history_max_size"`
	// CompactFree is the room in the queue file's free pages at which the
	// daemon rewrites the file without them while it runs, when they are
	// also three times what is in use; default 256 MiB; 0 = never.
	CompactFree ByteSize `toml:"compact_free"`
}

// SubmissionConfig is the [submission] table: how local programs hand mail in.
type SubmissionConfig struct {
	Socket         string   `toml:"socket"`           // SMTP unix socket; relative to StateDir; default "submit.sock"
	SocketMode     FileMode `toml:"socket_mode"`      // default 0666: every local user may send, as with Postfix's sendmail
	SocketGroup    string   `toml:"socket_group"`     // group name or numeric gid for the socket; "" = leave as is
	Listen         []string `toml:"listen"`           // extra loopback SMTP listeners, host:port; default none
	MaxMessageSize ByteSize `toml:"max_message_size"` // default 25 MiB
	MaxRecipients  int      `toml:"max_recipients"`   // default 1000
	Maildrop       string   `toml:"maildrop"`         // sendmail's fallback directory; relative to StateDir; default "maildrop"
	Hostname       string   `toml:"hostname"`         // greeting, EHLO, Received and Message-ID name; default the machine's host name
	// MaxConnections caps the intake connections open at once (socket and
	// listeners together); default 200. MaxConnectionsPerUser caps those of
	// one uid, on the socket and the listeners together (a TCP client is the
	// uid that owns its socket; without that lookup, all of loopback counts
	// as one); default 50.
	MaxConnections        int `toml:"max_connections"`
	MaxConnectionsPerUser int `toml:"max_connections_per_user"`
	// IdleTimeout bounds the wait for a command outside a transaction
	// (before MAIL FROM); default 1m.
	IdleTimeout Duration `toml:"idle_timeout"`
	// ReadTimeout bounds the wait for each command inside a transaction
	// and for the whole of DATA; default 10m (RFC 5321 §4.5.3.2 gives the
	// client 5 minutes for most commands and 10 for the data's end); at
	// least 1s.
	ReadTimeout Duration `toml:"read_timeout"`
	// MaxMemory caps the message bodies intake holds in memory at once
	// (one user at most half of it); default 256 MiB, or twice
	// MaxMessageSize if that is more; 0 = no cap. At least MaxMessageSize.
	MaxMemory ByteSize `toml:"max_memory"`
}

// ControlConfig is the [control] table: the socket that queue and dead-letter
// commands use to talk to the daemon.
type ControlConfig struct {
	Socket string `toml:"socket"` // relative to StateDir; default "control.sock"
	// AdminGroup is a group name or gid whose members may use the socket
	// besides root and the daemon's user (mode 0660); "" (default) = none
	// (mode 0600).
	AdminGroup string `toml:"admin_group"`
	// MailqSocket answers `mailq` for every local user (mode 0666), with
	// only what Postfix's mailq shows them: relative to StateDir; default
	// "mailq.sock".
	MailqSocket string `toml:"mailq_socket"`
}

// RelayConfig is the [relay] table: the one upstream relay. Its keys follow
// Nodemailer's SMTP transport (snake_case names, same defaults). After
// loading, URL has been folded into the separate fields, so users of a
// Config read Host, Port, Secure, LMTP, Socket and Auth and never parse URL.
type RelayConfig struct {
	URL               string     `toml:"url" redact:"url"`   // smtp://user:pass@host:587, smtps://host:465, lmtp://host:24, lmtp+unix:///path
	Host              string     `toml:"host"`               // default "localhost"; "" when Socket is set
	Port              int        `toml:"port"`               // default 587, 465 when Secure, 24 when LMTP; 0 when Socket is set
	Secure            bool       `toml:"secure"`             // TLS from the first byte (smtps)
	LMTP              bool       `toml:"lmtp"`               // speak LMTP instead of SMTP
	Socket            string     `toml:"socket"`             // absolute unix socket path (LMTP only); "" = TCP to Host:Port
	Name              string     `toml:"name"`               // EHLO/LHLO name; default the machine's host name
	Auth              AuthConfig `toml:"auth"`               // login; none when Auth.User is ""
	TLS               TLSConfig  `toml:"tls"`                // certificate checks and STARTTLS policy
	ConnectionTimeout Duration   `toml:"connection_timeout"` // default 2m
	GreetingTimeout   Duration   `toml:"greeting_timeout"`   // default 30s
	SocketTimeout     Duration   `toml:"socket_timeout"`     // inactivity allowed on a connection; default 10m
	MaxConnections    int        `toml:"max_connections"`    // pool size; default 5
	MaxMessages       int        `toml:"max_messages"`       // messages per connection before reconnecting; default 100
	Pool              bool       `toml:"pool"`               // keep connections open for the next message; default true
	IdleTimeout       Duration   `toml:"idle_timeout"`       // close a pooled connection idle this long; default 30s
	IdleCheck         Duration   `toml:"idle_check"`         // NOOP a pooled connection idle this long before reuse; default 5s
	RateLimit         int        `toml:"rate_limit"`         // at most this many messages per rate_delta, whole pool; default 0 = no limit
	RateDelta         Duration   `toml:"rate_delta"`         // the rate_limit window; default 1s
	LocalAddress      string     `toml:"local_address"`      // IP address to bind outgoing connections to; "" = the system's choice
	DNSTimeout        Duration   `toml:"dns_timeout"`        // time to resolve the relay's (and the proxy's) host name; default 30s
	Proxy             string     `toml:"proxy" redact:"url"` // socks5://, socks5h:// or http:// [user:pass@]host:port; "" = connect directly
	Debug             bool       `toml:"debug"`              // log the SMTP conversation (AUTH redacted, body as its size); default false
}

// AuthConfig is the [relay.auth] table (auth.go checks it). After
// loading, Type and Method are lower and upper case, and Pass,
// AccessToken, ClientSecret and RefreshToken hold the secrets whether they
// came from the key, its _file, pass_env or the url (except for
// [FindForClient], which reads no file or variable).
type AuthConfig struct {
	Type          string `toml:"type"`   // "login" (default: a password) or "oauth2"
	Method        string `toml:"method"` // PLAIN, LOGIN, CRAM-MD5, XOAUTH2 or OAUTHBEARER; "" = the best the relay offers
	User          string `toml:"user"`
	Pass          string `toml:"pass" redact:"secret"`
	PassFile      string `toml:"pass_file"`      // absolute path; read at load, one trailing newline dropped
	PassEnv       string `toml:"pass_env"`       // name of an environment variable holding the password
	AllowInsecure bool   `toml:"allow_insecure"` // AUTH without TLS; only for a loopback or unix-socket relay

	// OAuth2 (type = "oauth2"): a static access token, or a refresh token
	// with the client and token endpoint to get access tokens from.
	AccessToken      string   `toml:"access_token" redact:"secret"`
	AccessTokenFile  string   `toml:"access_token_file"` // absolute path; read again at every AUTH
	ClientID         string   `toml:"client_id"`
	ClientSecret     string   `toml:"client_secret" redact:"secret"`
	ClientSecretFile string   `toml:"client_secret_file"` // absolute path; read at load
	RefreshToken     string   `toml:"refresh_token" redact:"secret"`
	RefreshTokenFile string   `toml:"refresh_token_file"` // absolute path; read at load
	TokenURL         string   `toml:"token_url"`          // https:// (http:// only on loopback)
	Scopes           []string `toml:"scopes"`             // sent with each refresh; default none
}

// TLSConfig is the [relay.tls] table.
type TLSConfig struct {
	ServerName         string     `toml:"servername"`          // name the certificate must match; default Host ("" for a unix socket)
	RejectUnauthorized bool       `toml:"reject_unauthorized"` // verify the certificate; default true
	RequireTLS         bool       `toml:"require_tls"`         // fail rather than send without TLS
	IgnoreTLS          bool       `toml:"ignore_tls"`          // never STARTTLS
	CAFile             string     `toml:"ca_file"`             // absolute path of PEM CAs to trust instead of the system's
	CertFile           string     `toml:"cert_file"`           // absolute path of a PEM client certificate (chain) to present; needs key_file
	KeyFile            string     `toml:"key_file"`            // absolute path of the PEM private key of cert_file
	MinVersion         TLSVersion `toml:"min_version"`         // lowest TLS version accepted: "1.0", "1.1", "1.2" (default) or "1.3"
}

// DeliveryConfig is the [delivery] table.
type DeliveryConfig struct {
	Workers         int      `toml:"workers"`          // concurrent deliveries; default 32
	LeaseTimeout    Duration `toml:"lease_timeout"`    // how long a worker owns a message; default 15m
	ShutdownTimeout Duration `toml:"shutdown_timeout"` // wait for in-flight deliveries on stop; default 30s
	// Uncertain is what happens to a message whose connection was lost
	// after the final dot, before the reply: "retry" (default) or "hold".
	Uncertain UncertainPolicy `toml:"uncertain"`
}

// RetryConfig is the [retry] table: backoff after a temporary failure,
// defaults close to Postfix's.
type RetryConfig struct {
	InitialInterval Duration `toml:"initial_interval"` // default 5m
	Multiplier      float64  `toml:"multiplier"`       // default 2
	MaxInterval     Duration `toml:"max_interval"`     // default 1h
	MaxLifetime     Duration `toml:"max_lifetime"`     // then dead letter as expired; default 120h
}

// LogConfig is the [log] table.
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info (default), warn or error
	Format string `toml:"format"` // text (default) or json
	// Output is where log lines go: stderr (default; the journal under
	// systemd) or syslog.
	Output string `toml:"output"`
	// SyslogFacility is the facility of syslog lines: mail (default, as
	// Postfix: /var/log/mail.log), daemon, user or local0..local7.
	SyslogFacility string `toml:"syslog_facility"`
	// SyslogAddress is the syslog daemon's socket; "" means the local one
	// (/dev/log).
	SyslogAddress string `toml:"syslog_address"`
}

// HealthConfig is the [health] table: when `relayq status` exits non-zero,
// for use as a monitoring check. Zero turns a check off (the default).
type HealthConfig struct {
	MaxQueueAge Duration `toml:"max_queue_age"` // oldest deferred message older than this is unhealthy
	MaxDead     int      `toml:"max_dead"`      // more dead letters than this in the last 24h is unhealthy
}

// defaults returns the configuration before any file is read. Values that
// depend on the machine (state directory, host names) and on other keys
// (relay port) are filled in by resolve.
func defaults() *Config {
	return &Config{
		Queue: QueueConfig{Path: "queue.db", HistoryRetention: Duration{7 * 24 * time.Hour}, HistoryMaxSize: 1 << 30, CompactFree: 256 << 20},
		Submission: SubmissionConfig{
			Socket:         "submit.sock",
			SocketMode:     0o666,
			MaxMessageSize: 25 << 20,
			MaxRecipients:  1000,
			Maildrop:       "maildrop",
			// Postfix's smtpd_client_connection_count_limit is 50 too.
			MaxConnections:        200,
			MaxConnectionsPerUser: 50,
			IdleTimeout:           Duration{time.Minute},
			ReadTimeout:           Duration{10 * time.Minute},
			MaxMemory:             256 << 20,
		},
		Control: ControlConfig{Socket: "control.sock", MailqSocket: "mailq.sock"},
		Relay: RelayConfig{
			Host:              "localhost",
			TLS:               TLSConfig{RejectUnauthorized: true, MinVersion: TLSVersion12},
			DNSTimeout:        Duration{30 * time.Second},
			ConnectionTimeout: Duration{2 * time.Minute},
			GreetingTimeout:   Duration{30 * time.Second},
			SocketTimeout:     Duration{10 * time.Minute},
			MaxConnections:    5,
			MaxMessages:       100,
			Pool:              true,
			IdleTimeout:       Duration{30 * time.Second},
			IdleCheck:         Duration{5 * time.Second},
			RateDelta:         Duration{time.Second},
		},
		Delivery: DeliveryConfig{
			Workers:         32,
			LeaseTimeout:    Duration{15 * time.Minute},
			ShutdownTimeout: Duration{30 * time.Second},
			Uncertain:       UncertainRetry,
		},
		Retry: RetryConfig{
			InitialInterval: Duration{5 * time.Minute},
			Multiplier:      2,
			MaxInterval:     Duration{time.Hour},
			MaxLifetime:     Duration{120 * time.Hour},
		},
		Log:     LogConfig{Level: "info", Format: "text", Output: "stderr", SyslogFacility: "mail"},
		Notify:  NotifyConfig{Bounce: BounceNone, MaxPerHour: DefaultNoticesPerHour},
		Rewrite: RewriteConfig{SenderPolicy: SenderPolicy{EnvelopeFromWhen: "local", FromHeaderWhen: "local"}},
		API:     defaultAPI(), // api.go
	}
}

// Find picks the config and loads it: flagPath if non-empty, else
// $RELAYQ_CONFIG, else SystemConfigPath if it exists, else the embedded
// default. source is the path used, or "embedded default".
func Find(flagPath string, getenv func(string) string) (cfg *Config, source string, err error) {
	return newLoader(getenv).find(flagPath, SystemConfigPath)
}

// FindForClient is Find for commands that never talk to the relay (sendmail,
// queue and dead-letter listings), which any local user may run: it does not
// read relay.auth.pass_file or relay.tls.ca_file, which are usually readable
// by the daemon only, so Relay.Auth.Pass stays empty unless the file sets pass.
func FindForClient(flagPath string, getenv func(string) string) (cfg *Config, source string, err error) {
	l := newLoader(getenv)
	l.skipSecrets, l.client = true, true
	return l.find(flagPath, SystemConfigPath)
}

// FindForReload is Find for a running daemon reading its configuration
// again, which started with the one from started (Find's source). It
// refuses what is more likely a file caught half-written than a new
// configuration: an empty file (a config tool or an editor that truncates
// the file and then writes it, read in between, would otherwise put every
// key back to its default: another relay, no [limits]), and a file the
// daemon started with that is gone (Find would fall back to the embedded
// default). A new file where the daemon started without one is taken.
func FindForReload(flagPath string, getenv func(string) string, started string) (cfg *Config, source string, err error) {
	l := newLoader(getenv)
	l.reload = true
	return l.findAgain(flagPath, SystemConfigPath, started)
}

// findAgain is find for FindForReload (l.reload set).
func (l loader) findAgain(flagPath, systemPath, started string) (*Config, string, error) {
	cfg, source, err := l.find(flagPath, systemPath)
	if err == nil && source == embeddedName && started != embeddedName {
		return nil, started, fmt.Errorf("config: %s, which relayq started with, is gone; the embedded default is not taken in its place", started)
	}
	return cfg, source, err
}

// ClientDefault is the embedded default loaded as FindForClient loads a
// file: for a client whose config file exists but may not be read by this
// user (installed 0640 for the relay's secrets). Its state directory is the
// system's, where an installed daemon's sockets and maildrop are.
func ClientDefault(getenv func(string) string) (*Config, error) {
	l := newLoader(getenv)
	l.skipSecrets, l.client = true, true
	return l.parse(embeddedConfig, embeddedName)
}

// Load reads and checks the config file at path.
func Load(path string) (*Config, error) {
	return newLoader(os.Getenv).load(path)
}

// Parse checks a config held in memory; name stands for the file in error
// messages.
func Parse(data []byte, name string) (*Config, error) {
	return newLoader(os.Getenv).parse(data, name)
}

// Default returns the embedded default config, loaded. It panics only if
// the embedded file is broken, which config_test.go prevents.
func Default() *Config {
	cfg, err := Parse(embeddedConfig, embeddedName)
	if err != nil {
		panic(fmt.Sprintf("relayq: embedded packaging/config.toml: %v", err))
	}
	return cfg
}

// loader holds what loading takes from the process environment, so that
// tests can supply their own.
type loader struct {
	getenv      func(string) string
	euid        int
	stateDir    string                 // the system state directory, /var/lib/relayq
	hostname    func() (string, error) // os.Hostname
	homeDir     func() string          // home from the user database, when $HOME is unset
	writable    func(dir string) bool  // canWrite
	skipSecrets bool                   // see FindForClient
	client      bool                   // see FindForClient and stateDirFor
	reload      bool                   // see FindForReload: an empty file is an error
}

func newLoader(getenv func(string) string) loader {
	if getenv == nil {
		getenv = os.Getenv
	}
	return loader{
		getenv:   getenv,
		euid:     os.Geteuid(),
		stateDir: systemStateDir,
		hostname: os.Hostname,
		writable: canWrite,
		homeDir: func() string {
			if u, err := user.Current(); err == nil {
				return u.HomeDir
			}
			return ""
		},
	}
}

func (l loader) find(flagPath, systemPath string) (*Config, string, error) {
	path := flagPath
	if path == "" {
		path = l.getenv("RELAYQ_CONFIG")
	}
	if path == "" {
		_, err := os.Stat(systemPath)
		switch {
		case err == nil:
			path = systemPath
		case errors.Is(err, fs.ErrNotExist):
			cfg, err := l.parse(embeddedConfig, embeddedName)
			return cfg, embeddedName, err
		default:
			return nil, systemPath, fmt.Errorf("config: %w", err)
		}
	}
	cfg, err := l.load(path)
	return cfg, path, err
}

func (l loader) load(path string) (*Config, error) {
	var data []byte
	var err error
	if l.reload {
		data, err = readSettled(path, reloadSettle, reloadSettleMax)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if l.reload && len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("config: %s is empty (read while it was being written? write the new file beside it and rename it into place)", path)
	}
	return l.parse(data, path)
}

// A reload reads the file only once it has gone reloadSettle without a
// change: a config tool or an editor that truncates the file and writes
// it again, caught between its writes by a SIGHUP (or by systemctl
// reload right after the edit), would otherwise hand the daemon a prefix
// of the new file, and a prefix that ends at a line break parses, with
// defaults for every key it lacks. A file that keeps changing for
// reloadSettleMax is refused.
const (
	reloadSettle    = 300 * time.Millisecond
	reloadSettleMax = 5 * time.Second
)

// readSettled reads path once it has not changed for settle (its size,
// modification time and inode the same over that long, or its
// modification time that long ago), and not during the read.
func readSettled(path string, settle, max time.Duration) ([]byte, error) {
	deadline := time.Now().Add(max)
	for {
		before, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if time.Since(before.ModTime()) < settle {
			time.Sleep(settle)
			if now, err := os.Stat(path); err != nil || !sameVersion(before, now) {
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("%s is still being written (it changed within the last %s, again and again for %s); not reloaded", path, settle, max)
				}
				continue
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if after, err := os.Stat(path); err == nil && sameVersion(before, after) {
			return data, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s changed while it was read, again and again for %s; not reloaded", path, max)
		}
	}
}

// sameVersion reports whether two looks at a file saw the same content
// as far as its metadata says.
func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// parse is the one place a config is decoded: defaults, then the file, then
// resolve, then validate.
func (l loader) parse(data []byte, name string) (*Config, error) {
	cfg := defaults()
	md, err := toml.NewDecoder(bytes.NewReader(withoutCommentLines(data))).Decode(cfg)
	if err != nil {
		return nil, decodeError(name, data, err)
	}
	c := &checker{name: name, data: data, md: md}
	c.checkKeys()
	if err := c.err(); err != nil {
		return nil, err
	}
	l.resolve(cfg, c)
	if err := c.err(); err != nil {
		return nil, err
	}
	l.validate(cfg, c)
	if err := c.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}
