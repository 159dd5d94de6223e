package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
)

// The conversation log (Options.Debug) tags each line with its direction,
// as swaks and Postfix's debug_peer_list do.
const (
	dirClient = "C" // a line relayq sent
	dirServer = "S" // a line the relay sent
)

// maxLoggedLine bounds what a logged line keeps of a line, so that a relay
// sending an endless line cannot exhaust memory through the log.
const maxLoggedLine = 4096

// redactedLine replaces what must never reach a log: AUTH initial
// responses and every client line of an AUTH exchange.
const redactedLine = "<redacted>"

// watch returns nc wrapped so that the conversation on it is seen line by
// line: by the debug log when Options.Debug is set, and by Verify's
// recorder when ctx carries one. setup calls it on the connection the
// protocol runs on, above TLS (implicit TLS, and again after STARTTLS), so
// the log shows the decrypted conversation, never TLS records. Without
// either it returns nc unchanged.
func (t *Transport) watch(ctx context.Context, c *conn, nc net.Conn) net.Conn {
	rec := recorderFrom(ctx)
	if !t.opts.Debug && rec == nil {
		return nc
	}
	w := &wire{Conn: nc, rec: rec}
	if t.opts.Debug {
		w.log = t.log.With("conn", c.id, "relay", t.opts.Address)
	}
	tc, isTLS := nc.(*tls.Conn)
	if !isTLS || t.opts.Secure { // the first watch of this connection
		remote := c.io.RemoteAddr().String()
		if p := t.proxyName(); p != "" {
			w.logEvent("relay conversation: connected", "remote", remote, "proxy", p)
		} else {
			w.logEvent("relay conversation: connected", "remote", remote)
		}
		rec.connected(t, remote)
	}
	if isTLS {
		st := tc.ConnectionState()
		w.logEvent("relay conversation: TLS established", "version", tls.VersionName(st.Version),
			"cipher", tls.CipherSuiteName(st.CipherSuite))
		rec.tlsEstablished(t, st)
	}
	return w
}

// proxyName is the proxy for logs and reports: without credentials, "" when
// there is none.
func (t *Transport) proxyName() string {
	if t.opts.Proxy == nil {
		return ""
	}
	return proxyName(t.opts.Proxy)
}

// wire is a relay connection whose traffic is split into lines, in each
// direction, for the conversation log and Verify's recorder. It redacts
// AUTH exchanges: the mechanism is shown, the initial response and every
// client line until the relay's final reply are not. The message body is
// not shown line by line: its size is logged once, after the final dot.
type wire struct {
	net.Conn
	log *slog.Logger // nil: no conversation log
	rec *recorder    // nil: not verifying

	mu       sync.Mutex
	out, in  lineBuffer
	reply    []string     // lines of the relay's reply being read
	inAuth   bool         // between AUTH and the relay's final (non-334) reply
	dataSent bool         // DATA sent; a 354 starts the body
	body     *bodyCounter // non-nil while the body is being sent
}

func (w *wire) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	if n > 0 {
		w.mu.Lock()
		w.in.feed(b[:n], w.serverLine)
		w.mu.Unlock()
	}
	return n, err
}

// Write logs b before sending it, so that a write that blocks (a relay that
// stops reading) still shows what relayq was sending.
func (w *wire) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.sent(b)
	w.mu.Unlock()
	return w.Conn.Write(b)
}

// sent splits what relayq sends into command lines, or counts it while the
// body is being sent; w.mu is held.
func (w *wire) sent(b []byte) {
	for len(b) > 0 {
		if w.body == nil {
			w.out.feed(b, w.clientLine)
			return
		}
		n, done := w.body.feed(b)
		b = b[n:]
		if done {
			w.logLine(dirClient, fmt.Sprintf("<message body: %d bytes>", w.body.size))
			w.logLine(dirClient, ".")
			w.body = nil
		}
	}
}

// clientLine handles one line relayq sent; w.mu is held.
func (w *wire) clientLine(line string) {
	verb, _, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	switch {
	case w.inAuth:
		verb = "AUTH" // a response within the exchange
		w.logLine(dirClient, redactedLine)
	case verb == "AUTH":
		w.inAuth = true
		w.logLine(dirClient, redactAuth(line))
	default:
		w.dataSent = verb == "DATA"
		w.logLine(dirClient, line)
	}
	w.rec.command(verb)
}

// redactAuth keeps the verb and the mechanism of an AUTH command and hides
// its initial response.
func redactAuth(line string) string {
	f := strings.Fields(line)
	switch len(f) {
	case 0, 1:
		return "AUTH"
	case 2:
		return "AUTH " + f[1]
	}
	return "AUTH " + f[1] + " " + redactedLine
}

// serverLine handles one line the relay sent; w.mu is held.
func (w *wire) serverLine(line string) {
	w.logLine(dirServer, line)
	w.reply = append(w.reply, line)
	if len(line) > 3 && line[3] == '-' {
		return // more lines of this reply follow
	}
	code := line[:min(3, len(line))]
	if w.inAuth && !strings.HasPrefix(code, "3") {
		w.inAuth = false
	}
	if w.dataSent {
		w.dataSent = false
		if code == "354" {
			w.body = &bodyCounter{}
		}
	}
	w.rec.reply(w.reply)
	w.reply = w.reply[:0]
}

func (w *wire) logLine(dir, line string) {
	if w.log != nil {
		w.log.Info("relay conversation", "dir", dir, "line", line)
	}
}

func (w *wire) logEvent(msg string, args ...any) {
	if w.log != nil {
		w.log.Info(msg, args...)
	}
}

// lineBuffer collects bytes into CRLF (or LF) terminated lines, keeping at
// most maxLoggedLine bytes of each.
type lineBuffer struct {
	buf       []byte
	truncated bool
}

// feed adds b and calls emit with each line completed, without its line
// ending.
func (l *lineBuffer) feed(b []byte, emit func(string)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := maxLoggedLine - len(l.buf); len(chunk) > room {
			chunk, l.truncated = chunk[:room], true
		}
		l.buf = append(l.buf, chunk...)
		if i < 0 {
			return
		}
		line := strings.TrimSuffix(string(l.buf), "\r")
		if l.truncated {
			line += " …(truncated)"
		}
		emit(line)
		l.buf, l.truncated = l.buf[:0], false
		b = b[i+1:]
	}
}

// bodyCounter follows the message body as go-smtp sends it (dot-stuffed,
// CRLF lines) until the line that is a lone dot, which ends it.
type bodyCounter struct {
	size int64 // bytes of the body, the final ".\r\n" excluded
	col  int   // bytes since the start of the line
	dot  bool  // the line so far is "." or ".\r"
}

// feed counts b; it returns how many bytes belong to the body (the final
// dot line included) and whether the body ended.
func (bc *bodyCounter) feed(b []byte) (int, bool) {
	for i, ch := range b {
		bc.size++
		switch {
		case ch == '\n':
			if bc.dot && bc.col == 2 {
				bc.size -= 3
				return i + 1, true
			}
			bc.col, bc.dot = 0, false
			continue
		case bc.col == 0:
			bc.dot = ch == '.'
		case bc.col == 1:
			bc.dot = bc.dot && ch == '\r'
		default:
			bc.dot = false
		}
		bc.col++
	}
	return len(b), false
}
