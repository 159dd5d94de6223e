package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"relayq/queue"
	"relayq/transport"
)

// `relayq verify --json`. Every reply of the relay in it (greeting, AUTH,
// MAIL FROM, each RCPT TO, the error) is {code, enhanced, lines}, as in
// the queue's --json outputs; the text report prints them as sent.

// verifyError is why a relay is not ready: the stage that failed and the
// relay's reply when there was one.
type verifyError struct {
	Stage   string       `json:"stage"`
	Reply   *queue.Reply `json:"reply,omitempty"` // the relay's reply; absent for a local failure
	Message string       `json:"message"`         // the relay's reply text, or the local error
	Text    string       `json:"text"`            // one line for people: "rcpt: the relay replied 550 5.7.1 Relaying denied"
}

func newVerifyError(err error) *verifyError {
	ve := &verifyError{Message: err.Error(), Text: err.Error()}
	var te *transport.Error
	if errors.As(err, &te) {
		ve.Stage = te.Stage.String()
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return ve
	}
	ve.Message = se.Message
	var le *transport.LocalError
	if errors.As(err, &le) {
		ve.Text = ve.Stage + ": " + le.Error()
		return ve
	}
	ve.Reply = &queue.Reply{Code: se.Code, Lines: strings.Split(se.Message, "\n")}
	code := strconv.Itoa(se.Code)
	if c := se.EnhancedCode; c != smtp.EnhancedCodeNotSet && c != smtp.NoEnhancedCode {
		ve.Reply.Enhanced = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
		code += " " + ve.Reply.Enhanced
	}
	ve.Text = ve.Stage + ": the relay replied " + code + " " + strings.ReplaceAll(se.Message, "\n", " / ")
	return ve
}

// verifyJSON is one relay in `verify --json`: the transport's report with
// its replies as objects.
type verifyJSON struct {
	Name  string       `json:"relay"`
	Ready bool         `json:"ready"`
	Exit  int          `json:"exit"`
	Error *verifyError `json:"error,omitempty"`
	*transport.Report
	Greeting *queue.Reply      `json:"greeting,omitempty"`
	Auth     *verifyAuthJSON   `json:"auth"`
	Mail     *verifyEnvelope   `json:"mail,omitempty"`
	Rcpt     []*verifyEnvelope `json:"rcpt,omitempty"`
}

type verifyAuthJSON struct {
	*transport.AuthReport
	Reply *queue.Reply `json:"reply,omitempty"`
}

type verifyEnvelope struct {
	Address string       `json:"address"`
	OK      bool         `json:"ok"`
	Reply   *queue.Reply `json:"reply"`
}

func verifyJSONOf(r relayResult) verifyJSON {
	out := verifyJSON{Name: r.Name, Ready: r.Ready, Exit: r.Exit, Error: r.Error, Report: r.Report}
	rep := r.Report
	if rep == nil {
		return out
	}
	out.Greeting = parseReply(rep.Greeting)
	if rep.Auth != nil {
		out.Auth = &verifyAuthJSON{AuthReport: rep.Auth, Reply: parseReply(rep.Auth.Reply)}
	}
	envelope := func(e transport.EnvelopeReply) *verifyEnvelope {
		return &verifyEnvelope{Address: e.Address, OK: e.OK, Reply: parseReply(e.Reply)}
	}
	if rep.Mail != nil {
		out.Mail = envelope(*rep.Mail)
	}
	for _, rc := range rep.Rcpt {
		out.Rcpt = append(out.Rcpt, envelope(rc))
	}
	return out
}

// parseReply splits a reply as the transport recorded it, its lines as
// sent ("250-first\n250 2.1.5 last"), into code, enhanced code and text
// lines. Text that does not start with a reply code (relayq's own refusal,
// a broken connection) is a reply with code 0. "" is no reply: nil.
func parseReply(s string) *queue.Reply {
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	code, err := strconv.Atoi(lines[0][:min(3, len(lines[0]))])
	if err != nil || code < 200 || code > 599 {
		return &queue.Reply{Lines: lines}
	}
	r := &queue.Reply{Code: code}
	for i, l := range lines {
		if len(l) > 4 && strings.HasPrefix(l, lines[0][:3]) && (l[3] == ' ' || l[3] == '-') {
			l = l[4:]
		} else if len(l) <= 4 {
			l = ""
		}
		if enh, rest, ok := strings.Cut(l, " "); ok && isEnhanced(enh, code) && (i == 0 || enh == r.Enhanced) {
			r.Enhanced, l = enh, rest
		}
		r.Lines = append(r.Lines, l)
	}
	return r
}

// isEnhanced says whether s is an RFC 3463 enhanced code of the reply
// code's class: "5.7.1" for a 550.
func isEnhanced(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

func printVerifyJSON(w io.Writer, results []relayResult) int {
	out := struct {
		Ready  bool         `json:"ready"`
		Exit   int          `json:"exit"`
		Relays []verifyJSON `json:"relays"`
	}{Ready: true, Relays: []verifyJSON{}}
	for _, r := range results {
		out.Ready = out.Ready && r.Ready
		if out.Exit == exitOK {
			out.Exit = r.Exit
		}
		out.Relays = append(out.Relays, verifyJSONOf(r))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return exitIOErr
	}
	return out.Exit
}
