package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"

	"relayq/config"
)

// Logging to syslog ([log] output = "syslog"): each slog line, in the
// [log] format, becomes one syslog message with the [log]
// syslog_facility (mail by default, so that it lands in /var/log/mail.log
// as Postfix's lines do) and the line's level as its severity. The time is
// left out: syslog stamps each message itself.

// openLogOutput returns where the daemon's log lines go, and a function
// that closes it.
func openLogOutput(c config.LogConfig, stderr io.Writer) (io.Writer, func(), error) {
	if c.Output != "syslog" {
		return stderr, func() {}, nil
	}
	network := "" // log/syslog's local socket: /dev/log
	if c.SyslogAddress != "" {
		network = "unixgram"
	}
	prio := syslog.Priority(config.SyslogFacilities[c.SyslogFacility]<<3) | syslog.LOG_INFO
	w, err := syslog.Dial(network, c.SyslogAddress, prio, "relayq")
	if err != nil && network != "" {
		w, err = syslog.Dial("unix", c.SyslogAddress, prio, "relayq")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("log: syslog: %w", err)
	}
	return syslogWriter{w}, func() { w.Close() }, nil
}

// syslogWriter writes each line slog hands it (one Write per record) at
// the severity of its level= (text) or "level": (json).
type syslogWriter struct{ w *syslog.Writer }

func (s syslogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSuffix(p, []byte("\n")))
	var err error
	switch lineLevel(p) {
	case "ERROR":
		err = s.w.Err(line)
	case "WARN":
		err = s.w.Warning(line)
	case "DEBUG":
		err = s.w.Debug(line)
	default:
		err = s.w.Info(line)
	}
	return len(p), err
}

// lineLevel is the level slog wrote in a line without its time: "INFO"
// from `level=INFO msg=…` or `{"level":"INFO",…`; "" when there is none.
func lineLevel(p []byte) string {
	for _, prefix := range []string{"level=", `{"level":"`} {
		if rest, ok := bytes.CutPrefix(p, []byte(prefix)); ok {
			end := bytes.IndexAny(rest, ` "+-`)
			if end < 0 {
				end = len(rest)
			}
			return string(rest[:end])
		}
	}
	return ""
}

// dropTime leaves the time out of lines that go to syslog.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
