package smtptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// session is one client connection. It runs on its own goroutine.
type session struct {
	srv  *Server
	id   int
	raw  net.Conn // the socket: closing it is a Drop
	conn net.Conn // what the protocol runs on: the wire recorder, or TLS over it
	r    *bufio.Reader
	tls  bool
	cert string // subject common name of the client's TLS certificate
	helo string // the name of the hello accepted since the session or its TLS began
	user string
	n    int  // messages accepted on this connection
	left bool // counted as closed already (QUIT); under srv.mu

	inMail     bool
	from       string
	params     []string
	rcpts      []string
	rcptParams map[string][]string
	chunks     []byte // the message so far, from BDAT
}

func (ss *session) run() {
	ss.r = bufio.NewReader(ss.conn)
	proto := "ESMTP"
	if ss.srv.opts.LMTP {
		proto = "LMTP"
	}
	st := ss.srv.next("greeting", func(sc *Script) []Step { return sc.Greeting })
	if code, ok := ss.answer(st, 220, ss.srv.opts.Domain+" "+proto+" smtptest"); !ok || code != 220 {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		if !ss.handle(strings.ToUpper(verb), arg) {
			return
		}
	}
}

// handle runs one command; false ends the session.
func (ss *session) handle(verb, arg string) bool {
	switch verb {
	case "EHLO", "HELO", "LHLO":
		return ss.hello(verb, arg)
	case "STARTTLS":
		return ss.startTLS()
	case "AUTH":
		return ss.auth(arg)
	case "MAIL":
		return ss.mail(arg)
	case "RCPT":
		return ss.rcpt(arg)
	case "DATA":
		return ss.data()
	case "BDAT":
		return ss.bdat(arg)
	case "RSET":
		ss.reset()
		_, ok := ss.answer(ss.srv.next("rset", func(sc *Script) []Step { return sc.Rset }), 250, "2.0.0 Ok")
		return ok
	case "NOOP":
		_, ok := ss.answer(ss.srv.next("noop", func(sc *Script) []Step { return sc.Noop }), 250, "2.0.0 Ok")
		return ok
	case "QUIT":
		// The connection stops counting as open before the 221: a client
		// may open the next one as soon as it reads it (MaxConcurrent).
		ss.srv.note(func() { ss.srv.open--; ss.left = true })
		ss.reply(221, "2.0.0 Bye")
		return false
	}
	return ss.reply(500, "5.5.2 Command not recognized") == nil
}

func (ss *session) hello(verb, arg string) bool {
	name := strings.TrimSpace(arg)
	switch {
	case ss.srv.opts.LMTP && verb != "LHLO":
		return ss.reply(500, "5.5.1 This is an LMTP server, use LHLO") == nil
	case !ss.srv.opts.LMTP && verb == "LHLO":
		return ss.reply(500, "5.5.1 This is not an LMTP server") == nil
	case name == "":
		return ss.reply(501, "5.5.4 Syntax: "+verb+" hostname") == nil
	case ss.helo != "":
		ss.srv.note(func() { ss.srv.repeated++ })
		if ss.srv.opts.OneHello {
			return ss.reply(503, "5.5.1 Already identified") == nil
		}
	}
	ss.srv.note(func() { ss.srv.hellos = append(ss.srv.hellos, name) })
	ss.reset()
	text := ss.srv.opts.Domain + " greets " + name
	if verb != "HELO" {
		text += "\n" + strings.Join(ss.extensions(), "\n")
	}
	code, ok := ss.answer(ss.srv.next("hello", func(sc *Script) []Step { return sc.Hello }), 250, text)
	if code/100 == 2 {
		ss.helo = name
	}
	return ok
}

func (ss *session) extensions() []string {
	o := ss.srv.opts
	ext := []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}
	if o.MaxSize > 0 {
		ext = append(ext, "SIZE "+strconv.FormatInt(o.MaxSize, 10))
	} else {
		ext = append(ext, "SIZE")
	}
	if o.TLS && !ss.tls && !o.HideSTARTTLS {
		ext = append(ext, "STARTTLS")
	}
	if o.Auth != nil || o.Tokens != nil {
		ext = append(ext, "AUTH "+strings.Join(ss.srv.mechanisms(), " "))
	}
	if o.SMTPUTF8 {
		ext = append(ext, "SMTPUTF8")
	}
	if o.DSN {
		ext = append(ext, "DSN")
	}
	if o.Chunking {
		ext = append(ext, "CHUNKING")
	}
	var out []string
	for _, e := range ext {
		name, _, _ := strings.Cut(e, " ")
		if !ss.srv.without(name) {
			out = append(out, e)
		}
	}
	return out
}

func (ss *session) startTLS() bool {
	if !ss.srv.opts.TLS || ss.tls || ss.srv.without("STARTTLS") {
		return ss.reply(502, "5.5.1 STARTTLS not available") == nil
	}
	st := ss.srv.next("starttls", func(sc *Script) []Step { return sc.StartTLS })
	code, ok := ss.answer(st, 220, "2.0.0 Ready to start TLS")
	if !ok || code != 220 {
		return ok
	}
	return ss.handshake()
}

// handshake turns the connection into TLS and forgets everything said
// before it, buffered input included (RFC 3207 §4.2).
func (ss *session) handshake() bool {
	tc := tls.Server(ss.conn, ss.srv.tlsConfig())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		ss.srv.logf("conn %d: TLS handshake: %v", ss.id, err)
		return false
	}
	tc.SetDeadline(time.Time{})
	ss.conn, ss.tls = tc, true
	if peer := tc.ConnectionState().PeerCertificates; len(peer) > 0 {
		ss.cert = peer[0].Subject.CommonName
	}
	ss.r = bufio.NewReader(tc)
	ss.helo, ss.user = "", ""
	ss.reset()
	return true
}

func (ss *session) auth(arg string) bool {
	switch {
	case ss.srv.opts.Auth == nil && ss.srv.opts.Tokens == nil || ss.srv.without("AUTH"):
		return ss.reply(502, "5.5.1 AUTH not available") == nil
	case ss.helo == "":
		return ss.reply(503, "5.5.1 Send EHLO first") == nil
	case ss.user != "":
		return ss.reply(503, "5.5.1 Already authenticated") == nil
	}
	mech, ir, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if !slices.Contains(ss.srv.mechanisms(), mech) {
		return ss.reply(504, "5.5.4 Unrecognized authentication type") == nil
	}
	user, good, ok := ss.saslExchange(mech, ir)
	if !ok {
		return ss.reply(501, "5.5.2 Authentication exchange cancelled or malformed") == nil
	}
	code, text := 235, "2.7.0 Authentication successful"
	if !good {
		code, text = 535, "5.7.8 Authentication credentials invalid"
	}
	code, alive := ss.answer(ss.srv.next("auth", func(sc *Script) []Step { return sc.Auth }), code, text)
	if code == 235 {
		ss.user = user
	}
	return alive
}

func (ss *session) authPlain(ir string) (user, pass string, ok bool) {
	resp, ok := ss.challenge(ir, "")
	if !ok {
		return "", "", false
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 {
		return "", "", false
	}
	return string(parts[1]), string(parts[2]), true
}

// authLogin runs the two-step LOGIN exchange, taking the user name from the
// initial response when the client sent one.
func (ss *session) authLogin(ir string) (user, pass string, ok bool) {
	u, ok := ss.challenge(ir, "Username:")
	if !ok {
		return "", "", false
	}
	p, ok := ss.challenge("", "Password:")
	return string(u), string(p), ok
}

// challenge returns the initial response if there is one, else sends a 334
// with prompt and reads the client's answer.
func (ss *session) challenge(ir, prompt string) ([]byte, bool) {
	resp := ir
	if resp == "" {
		if ss.reply(334, base64.StdEncoding.EncodeToString([]byte(prompt))) != nil {
			return nil, false
		}
		line, err := ss.readLine()
		if err != nil || line == "*" {
			return nil, false
		}
		resp = line
	}
	if resp == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(resp)
	return b, err == nil
}

func (ss *session) mail(arg string) bool {
	if ss.helo == "" {
		return ss.reply(503, "5.5.1 Send EHLO first") == nil
	}
	ss.srv.note(func() { ss.srv.mails = append(ss.srv.mails, time.Now()) })
	if ss.inMail {
		return ss.reply(503, "5.5.1 Nested MAIL command") == nil
	}
	if max := ss.srv.opts.MaxMails; max > 0 && ss.n >= max {
		return ss.reply(452, "4.5.3 Too many recipients: Too many messages sent") == nil
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return ss.reply(501, "5.5.4 Syntax: MAIL FROM:<address>") == nil
	}
	from, params := parsePath(rest)
	if code, text := ss.checkMailParams(params); code != 0 {
		return ss.reply(code, text) == nil
	}
	code, alive := ss.answer(ss.srv.next("mail", func(sc *Script) []Step { return sc.Mail }), 250, "2.1.0 Ok")
	if code/100 == 2 {
		ss.inMail, ss.from, ss.params = true, from, params
	}
	return alive
}

// checkMailParams returns the error reply for MAIL parameters the server
// does not take, or 0.
func (ss *session) checkMailParams(params []string) (int, string) {
	o := ss.srv.opts
	for _, p := range params {
		key, value, _ := strings.Cut(p, "=")
		switch strings.ToUpper(key) {
		case "SIZE":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return 501, "5.5.4 Bad SIZE parameter"
			}
			if o.MaxSize > 0 && n > o.MaxSize {
				return 552, "5.3.4 Message size exceeds fixed limit"
			}
		case "BODY":
			switch strings.ToUpper(value) {
			case "7BIT":
			case "8BITMIME":
				if ss.srv.without("8BITMIME") {
					return 555, "5.5.4 BODY=8BITMIME not supported"
				}
			default:
				return 501, "5.5.4 Bad BODY parameter"
			}
		case "SMTPUTF8":
			if !o.SMTPUTF8 || ss.srv.without("SMTPUTF8") {
				return 555, "5.5.4 SMTPUTF8 not supported"
			}
		case "RET", "ENVID":
			if !ss.dsn() {
				return 555, "5.5.4 DSN not supported"
			}
		default:
			return 555, "5.5.4 Unsupported MAIL parameter " + key
		}
	}
	return 0, ""
}

func (ss *session) rcpt(arg string) bool {
	if !ss.inMail {
		return ss.reply(503, "5.5.1 Need MAIL command") == nil
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return ss.reply(501, "5.5.4 Syntax: RCPT TO:<address>") == nil
	}
	to, params := parsePath(rest)
	for _, p := range params {
		key, _, _ := strings.Cut(p, "=")
		if k := strings.ToUpper(key); (k != "NOTIFY" && k != "ORCPT") || !ss.dsn() {
			return ss.reply(555, "5.5.4 Unsupported RCPT parameter "+key) == nil
		}
	}
	st := ss.srv.nextFor("rcpt", to, func(sc *Script) map[string][]Step { return sc.Rcpt })
	code, alive := ss.answer(st, 250, "2.1.5 Ok")
	if code/100 == 2 {
		ss.rcpts = append(ss.rcpts, to)
		if len(params) > 0 {
			if ss.rcptParams == nil {
				ss.rcptParams = map[string][]string{}
			}
			ss.rcptParams[to] = params
		}
	}
	return alive
}

func (ss *session) data() bool {
	ss.srv.note(func() { ss.srv.datas++ })
	if !ss.inMail || len(ss.rcpts) == 0 {
		return ss.reply(503, "5.5.1 No valid recipients") == nil
	}
	st := ss.srv.next("data", func(sc *Script) []Step { return sc.Data })
	code, ok := ss.answer(st, 354, "End data with <CR><LF>.<CR><LF>")
	if !ok || code != 354 {
		return ok
	}
	body := ss.srv.next("body", func(sc *Script) []Step { return sc.Body })
	msg, ok := ss.readBody(body)
	if !ok {
		return false
	}
	defer ss.reset()
	ss.srv.onData(DataRead, msg)
	if body.AfterBytes > 0 {
		body.Fault = NoFault // the message was shorter: no fault
	}
	if !ss.prelude(body) {
		return false
	}
	if ss.srv.opts.LMTP {
		return ss.lmtpReplies(body, msg)
	}
	return ss.smtpReply(body, msg)
}

// bdat takes one BDAT chunk (RFC 3030): it is read whatever the reply.
// After the LAST one, the message is handled as after DATA's final dot.
func (ss *session) bdat(arg string) bool {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		return ss.reply(501, "5.5.4 Syntax: BDAT size [LAST]") == nil
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || size < 0 {
		return ss.reply(501, "5.5.4 Bad chunk size") == nil
	}
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	chunk := make([]byte, size)
	if _, err := io.ReadFull(ss.r, chunk); err != nil {
		return false
	}
	switch {
	case !ss.srv.opts.Chunking || ss.srv.without("CHUNKING"):
		return ss.reply(502, "5.5.1 BDAT not available") == nil
	case !ss.inMail || len(ss.rcpts) == 0:
		ss.chunks = nil
		return ss.reply(503, "5.5.1 No valid recipients") == nil
	}
	if ss.chunks == nil {
		ss.srv.note(func() { ss.srv.datas++ })
	}
	ss.chunks = append(ss.chunks, chunk...)
	if !last {
		return ss.reply(250, fmt.Sprintf("2.0.0 %d octets received", size)) == nil
	}
	msg := ss.chunks
	defer ss.reset()
	ss.srv.onData(DataRead, msg)
	body := ss.srv.next("body", func(sc *Script) []Step { return sc.Body })
	if !ss.prelude(body) {
		return false
	}
	if ss.srv.opts.LMTP {
		return ss.lmtpReplies(body, msg)
	}
	return ss.smtpReply(body, msg)
}

// readBody reads the message up to the final dot, undoing dot-stuffing and
// keeping every other byte. A Body step with AfterBytes faults part-way.
func (ss *session) readBody(st Step) ([]byte, bool) {
	var body []byte
	var n int64
	atStart := true // at the start of a line, not in the middle of a long one
	for {
		line, err := ss.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil // a long line: keep reading it
		}
		if err != nil {
			return nil, false
		}
		n += int64(len(line))
		start := atStart
		atStart = line[len(line)-1] == '\n'
		if start && string(line) == ".\r\n" {
			return body, true
		}
		if start && line[0] == '.' {
			line = line[1:]
		}
		body = append(body, line...)
		if st.AfterBytes > 0 && st.Fault != NoFault && n >= st.AfterBytes {
			ss.srv.logf("conn %d: fault after %d body bytes", ss.id, n)
			ss.prelude(st)
			return nil, false
		}
	}
}

func (ss *session) smtpReply(st Step, msg []byte) bool {
	id := fmt.Sprintf("C%dM%d", ss.id, ss.n+1)
	code, text := 250, "2.0.0 Ok: queued as "+id
	if m := ss.srv.opts.MaxSize; m > 0 && int64(len(msg)) > m {
		code, text = 552, "5.3.4 Message size exceeds fixed limit"
	}
	code, text, _ = ss.decide(Step{Code: st.Code, Text: st.Text}, code, text)
	if code/100 != 2 {
		return ss.send(code, text)
	}
	// Recorded before the reply goes out: the relay owns the message from
	// here on, whether or not the client hears the 250 (or makes sense of
	// a Raw reply in its place).
	ss.accept(id, ss.rcpts, msg)
	if st.Raw != "" {
		return ss.writeRaw(st.Raw)
	}
	if !ss.send(code, text) {
		return false
	}
	ss.srv.onData(DataAccepted, msg)
	return true
}

// lmtpReplies sends one reply per accepted recipient, in RCPT order. The
// message is recorded once, with every recipient that will get a 2xx,
// before the first reply goes out: a test that waits for it never sees it
// with only some of its recipients.
func (ss *session) lmtpReplies(st Step, msg []byte) bool {
	id := fmt.Sprintf("C%dM%d", ss.id, ss.n+1)
	type reply struct {
		step       Step
		code       int
		text, rcpt string
	}
	replies := make([]reply, len(ss.rcpts))
	var delivered []string
	for i, rcpt := range ss.rcpts {
		code, text := 250, "2.1.5 <"+rcpt+"> delivered as "+id
		if m := ss.srv.opts.MaxSize; m > 0 && int64(len(msg)) > m {
			code, text = 552, "5.3.4 Message size exceeds fixed limit"
		}
		if st.Code != 0 {
			code, text = st.Code, st.Text
		}
		rs := ss.srv.nextFor("lmtp", rcpt, func(sc *Script) map[string][]Step { return sc.LMTP })
		replies[i] = reply{step: rs, code: code, text: text, rcpt: rcpt}
		if rs.Fault != 0 {
			break // the session ends at this recipient's reply
		}
		final := code
		if rs.Code != 0 {
			final = rs.Code
		}
		if final/100 == 2 {
			delivered = append(delivered, rcpt)
		}
		if final == 421 {
			break // a 421 closes the session after its reply
		}
	}
	if len(delivered) > 0 {
		ss.accept(id, delivered, msg)
	}
	for _, r := range replies {
		if r.rcpt == "" {
			break
		}
		code, text, ok := ss.decide(r.step, r.code, r.text)
		if !ok {
			return false
		}
		if r.step.Raw != "" {
			if !ss.writeRaw(r.step.Raw) {
				return false
			}
		} else if !ss.send(code, text) {
			return false
		}
	}
	if len(delivered) > 0 {
		ss.srv.onData(DataAccepted, msg)
	}
	return true
}

// accept records a transaction and returns its index in Messages.
func (ss *session) accept(id string, to []string, msg []byte) int {
	ss.n++
	return ss.srv.record(Received{
		ID: id, Conn: ss.id, From: ss.from, MailParams: ss.params, RcptParams: ss.rcptParams,
		To: append([]string(nil), to...), Body: msg,
		Hello: ss.helo, AuthUser: ss.user, TLS: ss.tls, ClientCert: ss.cert,
	})
}

// answer does st in place of the normal reply (code, text). It returns the
// code sent (0 if none) and whether the session goes on.
func (ss *session) answer(st Step, code int, text string) (int, bool) {
	code, text, ok := ss.decide(st, code, text)
	if !ok {
		return 0, false
	}
	if st.Raw != "" {
		return code, ss.writeRaw(st.Raw)
	}
	return code, ss.send(code, text)
}

// writeRaw writes a scripted Step.Raw in place of a reply; false means the
// write failed.
func (ss *session) writeRaw(s string) bool {
	ss.srv.logf("conn %d S (raw): %q", ss.id, s)
	_, err := ss.conn.Write([]byte(s))
	return err == nil
}

// decide does st's delay and fault, and returns the reply to send: st's if
// it has a Code, else (code, text). ok false means the session ends.
func (ss *session) decide(st Step, code int, text string) (int, string, bool) {
	if !ss.prelude(st) {
		return 0, "", false
	}
	if st.Code != 0 {
		code, text = st.Code, st.Text
		if text == "" {
			text = defaultText(code)
		}
	}
	return code, text, true
}

// send writes a reply; false means the session ends (write failed, 421).
func (ss *session) send(code int, text string) bool {
	return ss.reply(code, text) == nil && code != 421
}

// prelude waits st.Delay and does st.Fault; false means the session ends.
func (ss *session) prelude(st Step) bool {
	if st.Delay > 0 {
		t := time.NewTimer(st.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ss.srv.done:
			return false
		}
	}
	switch st.Fault {
	case Drop:
		ss.srv.logf("conn %d: dropping the connection", ss.id)
		ss.raw.Close()
		return false
	case Hang:
		ss.srv.logf("conn %d: hanging", ss.id)
		<-ss.srv.done
		return false
	}
	return true
}

func (ss *session) reset() {
	ss.inMail, ss.from, ss.params, ss.rcpts, ss.rcptParams = false, "", nil, nil, nil
	ss.chunks = nil
}

// dsn reports whether DSN is offered.
func (ss *session) dsn() bool { return ss.srv.opts.DSN && !ss.srv.without("DSN") }

// reply writes one (possibly multi-line) reply in a single write.
func (ss *session) reply(code int, text string) error {
	lines := strings.Split(text, "\n")
	var b strings.Builder
	if ss.srv.opts.BareReplies && code != 334 {
		if len(lines) > 1 {
			fmt.Fprintf(&b, "%03d-\r\n", code)
			for _, l := range lines[1:] {
				fmt.Fprintf(&b, "%03d-%s\r\n", code, l)
			}
		}
		fmt.Fprintf(&b, "%03d\r\n", code)
		lines = nil
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%03d%s%s\r\n", code, sep, l)
	}
	ss.srv.logf("conn %d S: %s", ss.id, strings.TrimSpace(b.String()))
	_, err := ss.conn.Write([]byte(b.String()))
	return err
}

func (ss *session) readLine() (string, error) {
	line, err := ss.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(line), "\r\n")
	ss.srv.logf("conn %d C: %s", ss.id, s)
	ss.srv.note(func() { ss.srv.commands = append(ss.srv.commands, s) })
	return s, nil
}

// parsePath splits "<addr> PARAM=1 PARAM2" into the address and the
// parameters. It is lenient: a missing bracket is tolerated.
func parsePath(s string) (string, []string) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") {
		if end := strings.IndexByte(s, '>'); end > 0 {
			return s[1:end], strings.Fields(s[end+1:])
		}
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return "", nil
	}
	return f[0], f[1:]
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
