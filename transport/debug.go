package transport

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strconv"
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
// line: by the connection's transcript (transcript.go), always; by the
// debug log when Options.Debug is set; and by Verify's recorder when ctx
// carries one. setup calls it on the connection the protocol runs on, above
// TLS (implicit TLS, and again after STARTTLS), so that all of them see the
// decrypted conversation, never TLS records.
func (t *Transport) watch(ctx context.Context, c *conn, nc net.Conn) net.Conn {
	rec := recorderFrom(ctx)
	w := &wire{Conn: nc, rec: rec, tr: &c.tr, secrets: t.secrets}
	w.out.stop = func() bool { return w.chunkLeft > 0 }
	if t.opts.Debug {
		w.log = t.log.With("conn", c.id, "relay", t.opts.Address)
	}
	tc, isTLS := nc.(*tls.Conn)
	if !isTLS || t.opts.Secure { // the first watch of this connection
		remote := c.io.RemoteAddr().String()
		if p := t.proxyName(); p != "" {
			w.logEvent("relay conversation: connected", "remote", remote, "proxy", p)
			c.tr.addString(dirNote, "connected to "+t.opts.Address+" through the proxy "+p)
		} else {
			w.logEvent("relay conversation: connected", "remote", remote)
			c.tr.addString(dirNote, "connected to "+cmp.Or(remote, t.opts.Address)) // a Unix socket's peer has no name
		}
		rec.connected(t, remote)
	}
	if isTLS {
		st := tc.ConnectionState()
		version, cipher := tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
		w.logEvent("relay conversation: TLS established", "version", version, "cipher", cipher)
		c.tr.addString(dirNote, "TLS established: "+version+", "+cipher)
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
// direction, for the transcript, the conversation log and Verify's
// recorder. It redacts AUTH exchanges: the mechanism is shown, the initial
// response and every client line until the relay's final reply are not.
// The message body is not shown line by line: its size is recorded once,
// after the final dot.
type wire struct {
	net.Conn
	tr  *transcript  // the connection's; never nil
	log *slog.Logger // nil: no conversation log
	rec *recorder    // nil: not verifying
	// secrets are scrubbed out of every line (secrets.go): a relay may
	// echo a credential in a reply.
	secrets *secrets

	mu      sync.Mutex
	out, in lineBuffer
	reply   []string // lines of the relay's reply being read, for rec
	inAuth  bool     // between AUTH and the relay's final (non-334) reply
	// Commands may be pipelined (pipeline.go), so the reply to DATA is
	// found by counting: lines counts the client's lines (commands, AUTH
	// responses), answered the relay's final reply lines (up to lines:
	// the greeting answers nothing), and dataAt is the count at which
	// DATA was sent (0: none awaits its reply). Its reply, if 354, starts
	// the body.
	lines, answered, dataAt int
	inBody                  bool        // the body is being sent
	body                    bodyCounter // follows it while inBody
	// chunkLeft is what is left of the BDAT chunk being sent (chunking.go),
	// lastChunk whether it is the message's last.
	chunkLeft int64
	lastChunk bool
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

// Write records b before sending it, so that a write that blocks (a relay
// that stops reading) still shows what relayq was sending.
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
		switch {
		case w.chunkLeft > 0:
			n := min(w.chunkLeft, int64(len(b)))
			w.body.size += n
			w.chunkLeft -= n
			b = b[n:]
			if w.chunkLeft == 0 && w.lastChunk {
				w.bodySent(false)
			}
		case w.inBody:
			n, done := w.body.feed(b)
			b = b[n:]
			if done {
				w.bodySent(true)
			}
		default:
			// Up to the end of a BDAT line, whose chunk follows.
			b = b[w.out.feed(b, w.clientLine):]
		}
	}
}

// bodySent records the message body, all sent: after DATA, the final dot
// with it; w.mu is held.
func (w *wire) bodySent(dot bool) {
	w.tr.addBody(w.body.size, dot)
	if w.log != nil {
		w.logLine(dirClient, "<message body: "+strconv.FormatInt(w.body.size, 10)+" bytes>")
		if dot {
			w.logLine(dirClient, ".")
		}
	}
	w.inBody, w.body = false, bodyCounter{}
}

// chunk notes a BDAT command line (RFC 3030): the chunk of the body that
// follows it is counted, not split into lines. w.mu is held.
func (w *wire) chunk(line []byte) {
	f := bytes.Fields(line)
	if len(f) < 2 || len(f) > 3 {
		return
	}
	n, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil || n < 0 {
		return
	}
	w.chunkLeft, w.lastChunk = n, len(f) == 3 && bytes.EqualFold(f[2], []byte("LAST"))
	if n == 0 && w.lastChunk {
		w.bodySent(false)
	}
}

// clientLine handles one line relayq sent; w.mu is held. line is only
// valid during the call.
func (w *wire) clientLine(line []byte) {
	verb, _, _ := bytes.Cut(line, []byte(" "))
	auth := false
	switch {
	case w.inAuth:
		auth = true // a response within the exchange
		w.emitString(dirClient, redactedLine)
	case bytes.EqualFold(verb, []byte("AUTH")):
		auth, w.inAuth = true, true
		w.emitString(dirClient, redactAuth(string(line)))
	default:
		w.emit(dirClient, w.secrets.scrubBytes(line))
	}
	w.lines++
	if !auth && bytes.EqualFold(verb, []byte("DATA")) {
		w.dataAt = w.lines
	}
	if !auth && bytes.EqualFold(verb, []byte("BDAT")) {
		w.chunk(line)
	}
	if w.rec != nil {
		name := "AUTH"
		if !auth {
			name = strings.ToUpper(string(verb))
		}
		w.rec.command(name)
	}
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

// serverLine handles one line the relay sent; w.mu is held. line is only
// valid during the call.
func (w *wire) serverLine(line []byte) {
	line = w.secrets.scrubBytes(line)
	w.emit(dirServer, line)
	if w.rec != nil {
		w.reply = append(w.reply, string(line))
	}
	if len(line) > 3 && line[3] == '-' {
		return // more lines of this reply follow
	}
	if w.inAuth && !bytes.HasPrefix(line, []byte("3")) {
		w.inAuth = false
	}
	if w.answered < w.lines {
		w.answered++
	}
	if w.dataAt != 0 && w.answered == w.dataAt {
		w.dataAt = 0
		if bytes.HasPrefix(line, []byte("354")) {
			w.inBody, w.body = true, bodyCounter{}
		}
	}
	if w.rec != nil {
		w.rec.reply(w.reply)
		w.reply = w.reply[:0]
	}
}

// emit records one line of the conversation in the transcript and the log.
func (w *wire) emit(dir string, line []byte) {
	w.tr.add(dir, line)
	if w.log != nil {
		w.logLine(dir, string(line))
	}
}

func (w *wire) emitString(dir, line string) {
	w.tr.addString(dir, line)
	w.logLine(dir, line)
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
	stop      func() bool // after a line: whether to stop taking lines
}

// feed adds b and calls emit with each line completed, without its line
// ending; the line passed to emit is only valid during the call. It
// returns how much of b it took: all of it, or up to the end of a line
// after which the wire follows a BDAT chunk.
func (l *lineBuffer) feed(b []byte, emit func([]byte)) int {
	all := len(b)
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
			return all
		}
		line := bytes.TrimSuffix(l.buf, []byte("\r"))
		if l.truncated {
			line = append(line, " …(truncated)"...)
		}
		emit(line)
		l.buf, l.truncated = l.buf[:0], false
		b = b[i+1:]
		if l.stop != nil && l.stop() {
			break
		}
	}
	return all - len(b)
}

// bodyCounter follows the message body as go-smtp sends it (dot-stuffed,
// CRLF lines) until the line that is a lone dot, which ends it.
type bodyCounter struct {
	size int64 // bytes of the body, the final ".\r\n" excluded
	col  int   // bytes since the start of the line, counted up to 3
	dot  bool  // the line so far is "." or ".\r"
}

// feed counts b; it returns how many bytes belong to the body (the final
// dot line included) and whether the body ended. It looks at the first
// bytes of each line only, and finds line ends with bytes.IndexByte, so
// that following a large body costs little.
func (bc *bodyCounter) feed(b []byte) (int, bool) {
	n := 0
	for n < len(b) {
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			bc.lineStart(b[n:])
			bc.size += int64(len(b) - n)
			return len(b), false
		}
		bc.lineStart(b[n : n+i])
		bc.size += int64(i + 1)
		n += i + 1
		if bc.dot && bc.col == 2 {
			bc.size -= 3
			return n, true
		}
		bc.col, bc.dot = 0, false
	}
	return n, false
}

// lineStart follows the bytes seg of the current line (no '\n' in it):
// whether the line so far is "." or ".\r".
func (bc *bodyCounter) lineStart(seg []byte) {
	for _, ch := range seg {
		switch bc.col {
		case 0:
			bc.dot = ch == '.'
		case 1:
			bc.dot = bc.dot && ch == '\r'
		case 2:
			bc.dot = false
		default:
			return
		}
		bc.col++
	}
}
