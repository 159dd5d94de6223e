package transport

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// What transport reports of a relay's replies is bounded and holds no
// secret: the replies inside the errors and results Send and Verify return
// are what delivery stores in the queue and logs, and a relay (or a man in
// the middle) can send a reply of any length, or echo a credential back
// (secrets.go). Each line keeps at most maxReplyLine bytes and a reply at
// most maxReply; what is cut is marked with cutMarker.
const (
	maxReply     = 4 << 10
	maxReplyLine = 512
	cutMarker    = " [… cut]"
)

// cleanText scrubs the secrets out of a reply's text (lines separated by
// "\n") and then bounds it.
func (t *Transport) cleanText(s string) string {
	return boundReply(t.secrets.scrub(s))
}

// boundReply cuts each line of s to maxReplyLine bytes and s to maxReply,
// on character boundaries, marking each cut. A bounded text is returned
// as it is, so bounding twice changes nothing.
func boundReply(s string) string {
	lines := strings.Split(s, "\n")
	if len(s) <= maxReply && !slices.ContainsFunc(lines, func(l string) bool { return len(l) > maxReplyLine }) {
		return s
	}
	const room = 64 // for the line saying how many lines were cut
	var b strings.Builder
	for i, line := range lines {
		if len(line) > maxReplyLine {
			line = cutString(line, maxReplyLine-len(cutMarker)) + cutMarker
		}
		if b.Len()+len(line)+1 > maxReply-room {
			b.WriteString("\n[… " + strconv.Itoa(len(lines)-i) + " more line(s) cut]")
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(line)
	}
	return b.String()
}

// cutString cuts s to at most n bytes without splitting a character.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cleanErr scrubs and bounds every relay reply in err (in place: err is
// transport's to hand out) and, if err's text still holds a secret (a token
// endpoint's error, a local error quoting a reply), returns err wrapped so
// that its text is scrubbed; errors.Is and errors.As still see through it.
func (t *Transport) cleanErr(err error) error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) && te.Err != nil {
		te.Err = t.cleanErr(te.Err)
		return err
	}
	for _, se := range smtpErrors(err) {
		se.Message = t.cleanText(se.Message)
	}
	msg := err.Error()
	if clean := t.cleanText(msg); clean != msg {
		return &cleanError{msg: clean, err: err}
	}
	return err
}

// smtpErrors finds the *smtp.SMTPError values in err's tree.
func smtpErrors(err error) []*smtp.SMTPError {
	switch e := err.(type) {
	case nil:
		return nil
	case *smtp.SMTPError:
		return []*smtp.SMTPError{e}
	case smtp.LMTPDataError:
		var out []*smtp.SMTPError
		for _, se := range e {
			out = append(out, se)
		}
		return out
	case interface{ Unwrap() []error }:
		var out []*smtp.SMTPError
		for _, part := range e.Unwrap() {
			out = append(out, smtpErrors(part)...)
		}
		return out
	}
	return smtpErrors(errors.Unwrap(err))
}

// cleanError is an error whose text was scrubbed and bounded.
type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// cleanResult scrubs and bounds the replies of a transaction's result.
func (t *Transport) cleanResult(res *Result) {
	for i := range res.Recipients {
		r := &res.Recipients[i]
		r.Err = t.cleanErr(r.Err)
		r.Reply = t.cleanText(r.Reply)
	}
}

// finalReply reports whether code is a reply the relay may give to the
// final dot (RFC 5321 §4.2, §4.3.2): 250, or a 4xx or 5xx whose second
// digit is 0 to 5. Anything else (999, 354, 251, a 1xx) is not a verdict
// on the message: the relay may have taken it or not.
func finalReply(code int) bool {
	if code == 250 {
		return true
	}
	return (code/100 == 4 || code/100 == 5) && code/10%10 <= 5
}

// malformedReply wraps a reply to the final dot that is not a valid final
// reply: an *Error with AfterDot, as when no reply came.
func malformedReply(se *smtp.SMTPError) *Error {
	return &Error{Stage: StageDot, AfterDot: true,
		Err: &malformedError{se: se}}
}

// malformedError is a reply to the final dot that is not a valid one.
type malformedError struct{ se *smtp.SMTPError }

func (e *malformedError) Error() string {
	return "the relay's reply to the final dot is not a valid SMTP reply (" + strconv.Itoa(e.se.Code) + "), so whether it took the message is unknown: " + e.se.Error()
}

func (e *malformedError) Unwrap() error { return e.se }
