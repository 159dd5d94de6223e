package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// APIConfig is the [api] table: the HTTP submission API (package api).
type APIConfig struct {
	// Socket is the API's Unix socket, relative to StateDir; default
	// "api.sock"; "" = none. It has the submission socket's mode and group.
	Socket string `toml:"socket"`
	// Listen is a loopback host:port for the API over TCP; "" (default) =
	// none. It needs TokenFile.
	Listen string `toml:"listen"`
	// TokenFile holds the bearer token TCP callers must send.
	TokenFile string `toml:"token_file"`
	// DisableFileAccess refuses attachments with a path on the socket
	// (default false: allowed, under FileRoots only);
	// ListenDisableFileAccess on the TCP listener (default true).
	DisableFileAccess       bool `toml:"disable_file_access"`
	ListenDisableFileAccess bool `toml:"listen_disable_file_access"`
	// FileRoots are the absolute directories path attachments may be read
	// from; default none (so no file can be read).
	FileRoots []string `toml:"file_roots"`
	// DisableURLAccess refuses attachments with an href, on every listener;
	// default true.
	DisableURLAccess bool `toml:"disable_url_access"`
	// URLTimeout bounds a whole fetch (default 10s); URLMaxSize one fetched
	// body (default max_attachment_size).
	URLTimeout Duration `toml:"url_timeout"`
	URLMaxSize ByteSize `toml:"url_max_size"`
	// MaxAttachmentSize bounds one attachment (default 10 MiB),
	// MaxAttachments their number (default 20), MaxRequestSize a request
	// body (default 32 MiB); the composed message is bounded by
	// submission.max_message_size.
	MaxAttachmentSize ByteSize `toml:"max_attachment_size"`
	MaxAttachments    int      `toml:"max_attachments"`
	MaxRequestSize    ByteSize `toml:"max_request_size"`
	// MaxConnections caps the open connections on each listener; default 64.
	MaxConnections int `toml:"max_connections"`
	// IdempotencyWindow is how long an Idempotency-Key is remembered;
	// default 24h.
	IdempotencyWindow Duration `toml:"idempotency_window"`
}

func defaultAPI() APIConfig {
	return APIConfig{
		Socket:                  "api.sock",
		ListenDisableFileAccess: true,
		DisableURLAccess:        true,
		URLTimeout:              Duration{10 * time.Second},
		MaxAttachmentSize:       10 << 20,
		MaxAttachments:          20,
		MaxRequestSize:          32 << 20,
		MaxConnections:          64,
		IdempotencyWindow:       Duration{24 * time.Hour},
	}
}

// resolveAPI makes the socket path absolute.
func resolveAPI(cfg *Config) {
	if s := cfg.API.Socket; s != "" && !filepath.IsAbs(s) {
		cfg.API.Socket = filepath.Join(cfg.StateDir, s)
	}
	if cfg.API.URLMaxSize == 0 {
		cfg.API.URLMaxSize = cfg.API.MaxAttachmentSize
	}
}

// validateAPI checks [api].
func validateAPI(c *checker, cfg *Config) {
	a := cfg.API
	checkSocketPath(c, "api.socket", a.Socket)
	if a.Socket != "" && (a.Socket == cfg.Submission.Socket || a.Socket == cfg.Control.Socket || a.Socket == cfg.Control.MailqSocket || a.Socket == cfg.Queue.Path) {
		c.add("api.socket", "%s is also another socket or the queue", a.Socket)
	}
	if a.Listen != "" {
		if err := checkListen(a.Listen); err != nil {
			c.add("api.listen", "%v", err)
		}
		if a.TokenFile == "" {
			c.add("api.token_file", "is required with api.listen: the TCP API needs a bearer token")
		}
	}
	if a.TokenFile != "" && !filepath.IsAbs(a.TokenFile) {
		c.add("api.token_file", "%q is not an absolute path", a.TokenFile)
	}
	for _, r := range a.FileRoots {
		if err := checkFileRoot(r, cfg.StateDir); err != nil {
			c.add("api.file_roots", "%v", err)
		}
	}
	positive(c, "api.url_timeout", a.URLTimeout)
	positive(c, "api.idempotency_window", a.IdempotencyWindow)
	for _, s := range []struct {
		key string
		v   ByteSize
	}{{"api.max_attachment_size", a.MaxAttachmentSize}, {"api.max_request_size", a.MaxRequestSize}, {"api.url_max_size", a.URLMaxSize}} {
		if s.v <= 0 {
			c.add(s.key, "%d must be more than 0", s.v)
		}
	}
	atLeast(c, "api.max_attachments", a.MaxAttachments, 1)
	atLeast(c, "api.max_connections", a.MaxConnections, 1)
}

// checkFileRoot refuses a root that is relative, or that holds the state
// directory or lies in it: the API must never hand out the queue.
func checkFileRoot(root, stateDir string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("%q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	if within(stateDir, root) || within(root, stateDir) {
		return fmt.Errorf("%q overlaps the state directory %s (the queue must never be readable through the API)", root, stateDir)
	}
	return nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
