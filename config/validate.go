package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a unix socket can have on Linux
// (sizeof sun_path, 108, less the terminating NUL).
const maxSocketPath = 107

// resolve fills in what depends on the machine and on other keys: the state
// directory, paths under it, host names, and the relay.
func (l loader) resolve(cfg *Config, c *checker) {
	homeDir := l.homeDir
	l.homeDir = func() string { cfg.UserDB = true; return homeDir() }
	cfg.StateDir = l.stateDirFor(cfg.StateDir)
	for _, p := range []struct {
		key  string
		path *string
	}{
		{"queue.path", &cfg.Queue.Path},
		{"submission.socket", &cfg.Submission.Socket},
		{"submission.maildrop", &cfg.Submission.Maildrop},
		{"control.socket", &cfg.Control.Socket},
		{"control.mailq_socket", &cfg.Control.MailqSocket},
	} {
		if *p.path == "" {
			c.add(p.key, "must not be empty")
		} else if !filepath.IsAbs(*p.path) {
			*p.path = filepath.Join(cfg.StateDir, *p.path)
		}
	}
	host, err := l.hostname()
	if err != nil || !isHostname(host) {
		host = "localhost"
	}
	if cfg.Submission.Hostname == "" {
		cfg.Submission.Hostname = host
	}
	if cfg.Relay.Name == "" {
		cfg.Relay.Name = host
	}
	l.resolveRelay(&cfg.Relay, c)
	l.resolveRelays(cfg, c, host) // routes.go
	l.resolveRewrite(cfg, c)      // rewrite.go
	resolveAPI(cfg)               // api.go
	if !c.set("queue.min_free") {
		cfg.Queue.MinFree = 2 * cfg.Submission.MaxMessageSize
	}
	if !c.set("submission.max_memory") {
		cfg.Submission.MaxMemory = max(cfg.Submission.MaxMemory, 2*cfg.Submission.MaxMessageSize)
	}
}

// stateDirFor returns the absolute state directory for the state_dir key.
// It never fails, so that Default cannot: without any usable home it falls
// back to the system directory, where a later open fails with a clear
// permission error.
//
// Left empty, root uses the system directory (/var/lib/relayq). Another
// user's daemon uses it only when that user may write in it (the relayq
// user of the systemd unit), else its own directory ($XDG_STATE_HOME/relayq
// or ~/.local/state/relayq), which it creates. A client (sendmail, mailq,
// queue) looks where that user's own daemon would be when that directory
// exists, and at the system directory otherwise, so that an ordinary user
// reaches the system's daemon and a user who runs their own reaches theirs.
func (l loader) stateDirFor(dir string) string {
	if dir != "" {
		if abs, err := filepath.Abs(dir); err == nil {
			return abs
		}
		return filepath.Clean(dir)
	}
	if l.euid == 0 {
		return l.stateDir
	}
	system := isDir(l.stateDir)
	writable := system && l.writable(l.stateDir)
	own := l.ownStateDir()
	switch {
	case writable:
		return l.stateDir
	case l.client && own != "" && isDir(own):
		return own
	case l.client && system:
		return l.stateDir
	case own != "":
		return own
	}
	return l.stateDir
}

// ownStateDir is the state directory of a user's own daemon:
// $XDG_STATE_HOME/relayq, else ~/.local/state/relayq; "" without a home.
func (l loader) ownStateDir() string {
	// XDG Base Directory: a relative $XDG_STATE_HOME is invalid and ignored.
	if x := l.getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "relayq")
	}
	home := l.getenv("HOME")
	if !filepath.IsAbs(home) {
		home = l.homeDir()
	}
	if filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "relayq")
	}
	return ""
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// canWrite reports whether this process may create files in dir
// (access(2) with W_OK, which honours groups and ACLs).
func canWrite(dir string) bool {
	return syscall.Access(dir, 2 /* W_OK */) == nil
}

// validate checks every value outside [relay] (which resolveRelay checks).
func (l loader) validate(cfg *Config, c *checker) {
	validateRoutes(cfg, c) // routes.go
	s := cfg.Submission
	checkSocketPath(c, "submission.socket", s.Socket)
	checkSocketPath(c, "control.socket", cfg.Control.Socket)
	checkSocketPath(c, "control.mailq_socket", cfg.Control.MailqSocket)
	if s.SocketGroup != "" {
		cfg.UserDB = cfg.UserDB || groupName(s.SocketGroup)
		if _, err := s.SocketGID(); err != nil {
			c.add("submission.socket_group", "%v", err)
		}
	}
	for _, addr := range s.Listen {
		if err := checkListen(addr); err != nil {
			c.add("submission.listen", "%v", err)
		}
	}
	if s.MaxMessageSize <= 0 {
		c.add("submission.max_message_size", "must be greater than 0")
	}
	if s.MaxMemory < 0 || (s.MaxMemory > 0 && s.MaxMemory < s.MaxMessageSize) {
		c.add("submission.max_memory", "%s is less than submission.max_message_size (%s); 0 means no cap", s.MaxMemory, s.MaxMessageSize)
	}
	atLeast(c, "submission.max_recipients", s.MaxRecipients, 1)
	atLeast(c, "submission.max_connections", s.MaxConnections, 1)
	atLeast(c, "submission.max_connections_per_user", s.MaxConnectionsPerUser, 1)
	positive(c, "submission.idle_timeout", s.IdleTimeout)
	atLeastDuration(c, "submission.read_timeout", s.ReadTimeout, time.Second)
	if !validName(s.Hostname) {
		c.add("submission.hostname", "%q is not a host name", s.Hostname)
	}
	checkDistinct(c, cfg)

	atLeast(c, "delivery.workers", cfg.Delivery.Workers, 1)
	positive(c, "delivery.lease_timeout", cfg.Delivery.LeaseTimeout)

	r := cfg.Retry
	positive(c, "retry.initial_interval", r.InitialInterval)
	if r.Multiplier < 1 || math.IsInf(r.Multiplier, 0) || math.IsNaN(r.Multiplier) {
		c.add("retry.multiplier", "%v must be a number of at least 1", r.Multiplier)
	}
	if r.MaxInterval.Duration < r.InitialInterval.Duration {
		c.add("retry.max_interval", "%s is shorter than retry.initial_interval (%s)", r.MaxInterval, r.InitialInterval)
	}
	positive(c, "retry.max_lifetime", r.MaxLifetime)
	atLeast(c, "health.max_dead", cfg.Health.MaxDead, 0)
	validateLimits(c, cfg.Limits)   // limits.go
	validateNotify(c, cfg)          // notify.go
	validateRewrite(c, cfg)         // rewrite.go
	validateMetrics(c, cfg.Metrics) // metrics.go
	validateAPI(c, cfg)             // api.go

	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		c.add("log.level", "%q is not one of debug, info, warn, error", cfg.Log.Level)
	}
	switch cfg.Log.Format {
	case "text", "json":
	default:
		c.add("log.format", "%q is not one of text, json", cfg.Log.Format)
	}
	switch cfg.Log.Output {
	case "stderr", "syslog":
	default:
		c.add("log.output", "%q is not one of stderr, syslog", cfg.Log.Output)
	}
	if _, ok := SyslogFacilities[cfg.Log.SyslogFacility]; !ok {
		c.add("log.syslog_facility", "%q is not one of mail, daemon, user, local0 to local7", cfg.Log.SyslogFacility)
	}
	if a := cfg.Log.SyslogAddress; a != "" && !filepath.IsAbs(a) {
		c.add("log.syslog_address", "%q is not an absolute path", a)
	}
}

// SyslogFacilities are the values log.syslog_facility takes, with their
// numbers as in RFC 5424 (log/syslog's Priority, shifted).
var SyslogFacilities = map[string]int{
	"mail": 2, "daemon": 3, "user": 1,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// SocketGID returns the numeric group for the submission socket, looking a
// group name up in the group database; -1 (as os.Chown takes it: leave the
// group alone) when socket_group is empty. A number is taken as a gid without
// lookup, since chown needs none.
func (s SubmissionConfig) SocketGID() (int, error) {
	if s.SocketGroup == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(s.SocketGroup); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("%d is not a group id", gid)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(s.SocketGroup)
	if errors.As(err, new(user.UnknownGroupError)) {
		return 0, fmt.Errorf("no group %q", s.SocketGroup)
	}
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", s.SocketGroup, err)
	}
	return strconv.Atoi(g.Gid)
}

// checkListen accepts a loopback host:port. relayq has no submission AUTH, so
// a listener on any other address would be an open relay. Port 0 picks a free
// port.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: %s is not a port (0-65535)", addr, port)
	}
	if !isLoopback(host) {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1, [::1] or localhost): "+
			"relayq does not authenticate submitters, so it would be an open relay", addr)
	}
	return nil
}

// checkSocketPath checks that path fits in a unix socket address.
func checkSocketPath(c *checker, key, path string) {
	if path == "" {
		return // reported where it was resolved
	}
	if !filepath.IsAbs(path) {
		c.add(key, "%q is not an absolute path", path)
	}
	if len(path) > maxSocketPath {
		c.add(key, "%s is %d bytes long; a unix socket path can have at most %d", path, len(path), maxSocketPath)
	}
}

// checkDistinct refuses two uses of one path (the queue database as the
// socket, say), which would fail later in a confusing way.
func checkDistinct(c *checker, cfg *Config) {
	seen := map[string]string{}
	for _, p := range []struct{ key, path string }{
		{"queue.path", cfg.Queue.Path},
		{"submission.socket", cfg.Submission.Socket},
		{"submission.maildrop", cfg.Submission.Maildrop},
		{"control.socket", cfg.Control.Socket},
		{"control.mailq_socket", cfg.Control.MailqSocket},
	} {
		if p.path == "" {
			continue
		}
		if other, ok := seen[p.path]; ok {
			c.add(p.key, "%s is also %s", p.path, other)
		}
		seen[p.path] = p.key
	}
}

func atLeast(c *checker, key string, v, low int) {
	if v < low {
		c.add(key, "%d must be at least %d", v, low)
	}
}

// atLeastDuration refuses a duration shorter than low: a timeout so short
// that ordinary clients would trip over it.
func atLeastDuration(c *checker, key string, d Duration, low time.Duration) {
	if d.Duration < low {
		c.add(key, "%s must be at least %s", d, Duration{low})
	}
}

func positive(c *checker, key string, d Duration) {
	if d.Duration <= 0 {
		c.add(key, "%s must be longer than 0", d)
	}
}
