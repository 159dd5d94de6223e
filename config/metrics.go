package config

import (
	"net"
	"strconv"
)

// MetricsConfig is the [metrics] table: an HTTP listener serving
// Prometheus metrics at /metrics and a health check at /healthz. Off by
// default.
type MetricsConfig struct {
	// Listen is the host:port of the listener, e.g. "127.0.0.1:9587"; ""
	// (default) serves nothing. Port 0 picks a free port (logged at start).
	Listen string `toml:"listen"`
	// AllowRemote lets Listen be an address other than loopback. The
	// metrics name the relays and count the mail, which is not for
	// everyone: off by default, and when on, a firewall should let only
	// the Prometheus server in.
	AllowRemote bool `toml:"allow_remote"`
}

// validateMetrics checks [metrics].
func validateMetrics(c *checker, m MetricsConfig) {
	if m.Listen == "" {
		if m.AllowRemote {
			c.add("metrics.allow_remote", "is only used with metrics.listen")
		}
		return
	}
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		c.add("metrics.listen", "%q is not host:port", m.Listen)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		c.add("metrics.listen", "%q: %s is not a port (0-65535)", m.Listen, port)
		return
	}
	if !m.AllowRemote && !isLoopback(host) {
		c.add("metrics.listen", "%q is not a loopback address (127.0.0.1, [::1] or localhost); "+
			"set metrics.allow_remote = true to serve metrics to other hosts", m.Listen)
	}
}
