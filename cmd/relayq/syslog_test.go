package main

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/config"
)

// [log] output = "syslog": each line goes to the syslog socket with the
// configured facility and the line's level as severity, without a time.
func TestSyslogOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		format, facility string
		log              func(*slog.Logger)
		want             []string
	}{
		{"text", "mail", func(l *slog.Logger) { l.Warn("relay slow", "id", "x1") }, []string{"<20>", "relayq[", "level=WARN msg=\"relay slow\" id=x1"}},
		{"text", "local3", func(l *slog.Logger) { l.Error("boom") }, []string{"<155>", "level=ERROR msg=boom"}},
		{"json", "mail", func(l *slog.Logger) { l.Info("ready") }, []string{"<22>", `{"level":"INFO","msg":"ready"}`}},
	} {
		c := config.LogConfig{Level: "debug", Format: tc.format, Output: "syslog", SyslogFacility: tc.facility, SyslogAddress: path}
		w, closeLog, err := openLogOutput(c, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		tc.log(newLogger(c, w))
		closeLog()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := string(buf[:n])
		for _, want := range tc.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s/%s: syslog got %q, want it to contain %q", tc.format, tc.facility, got, want)
			}
		}
		if strings.Contains(got, "time=") || strings.Contains(got, `"time"`) {
			t.Errorf("syslog line has its own time: %q", got)
		}
	}
}

func TestLineLevel(t *testing.T) {
	for in, want := range map[string]string{
		"level=INFO msg=x":             "INFO",
		"level=WARN+2 msg=x":           "WARN",
		`{"level":"ERROR","msg":"x"}`:  "ERROR",
		`{"level":"DEBUG-4","msg":""}`: "DEBUG",
		"msg=x":                        "",
	} {
		if got := lineLevel([]byte(in)); got != want {
			t.Errorf("lineLevel(%q) = %q, want %q", in, got, want)
		}
	}
}
