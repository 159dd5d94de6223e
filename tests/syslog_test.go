package tests

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogToSyslog: relayq serve with [log] output = "syslog" → a Unix
// datagram socket standing in for /dev/log. The daemon's lines arrive
// there with the mail facility (as Postfix's, for /var/log/mail.log) and
// their level as severity, and no longer on stderr.
func TestLogToSyslog(t *testing.T) {
	d := newDaemon(t, nil)
	path := filepath.Join(d.dir, "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d.settings.set("log", "output", `"syslog"`)
	d.settings.set("log", "syslog_address", tomlString(path))
	d.writeConfig()
	d.start()

	var got []string
	buf := make([]byte, 8192)
	for !strings.Contains(strings.Join(got, "\n"), "relayq ready") {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no \"relayq ready\" line on the syslog socket (%v); got:\n%s", err, strings.Join(got, "\n"))
		}
		got = append(got, string(buf[:n]))
	}
	for _, line := range got {
		// <PRI>: mail (2) × 8 + info (6) = 22, warning (4) = 20.
		if !strings.HasPrefix(line, "<22>") && !strings.HasPrefix(line, "<20>") {
			t.Errorf("syslog line without the mail facility at info or warning: %q", line)
		}
		if _, msg, _ := strings.Cut(line, "]: "); !strings.HasPrefix(msg, "level=") {
			t.Errorf("syslog message does not begin with level= (its own time?): %q", line)
		}
	}
	if strings.Contains(d.log.String(), "relayq ready") {
		t.Error("log lines still go to stderr")
	}
}
