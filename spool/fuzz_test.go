package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"relayq/queue"
)

// The fuzz targets of the intake. Each checks properties, not only that
// nothing panics. Seeds are added with f.Add; inputs the fuzzer found
// interesting live in testdata/fuzz/<FuzzName>/. tests/run.sh runs each for
// a few seconds.

// refNormalize is the normaliser's specification, written the slow and
// obvious way: CRLF, bare CR and bare LF each become CRLF, and a body that
// is not empty ends with CRLF.
func refNormalize(in []byte) []byte {
	out := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
	out = bytes.ReplaceAll(out, []byte("\r"), []byte("\n"))
	out = bytes.ReplaceAll(out, []byte("\n"), []byte("\r\n"))
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

// checkCRLFOnly reports a CR or LF that is not part of a CRLF pair, or a
// body that does not end with CRLF.
func checkCRLFOnly(body []byte) error {
	rest := bytes.ReplaceAll(body, []byte("\r\n"), nil)
	if i := bytes.IndexAny(rest, "\r\n"); i >= 0 {
		return fmt.Errorf("bare CR or LF left in %q", body)
	}
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		return fmt.Errorf("body does not end with CRLF: %q", body)
	}
	return nil
}

// dotStuffed is body as relayq's transport puts it on the wire: go-smtp's
// client writes DATA through net/textproto's DotWriter.
func dotStuffed(body []byte) []byte {
	var wire bytes.Buffer
	bw := bufio.NewWriter(&wire)
	w := textproto.NewWriter(bw).DotWriter()
	w.Write(body)
	w.Close()
	return wire.Bytes()
}

// checkWire checks that a stored body, once dot-stuffed, has exactly one
// end of data, at its end, and that a relay reading it gets the body back.
func checkWire(body []byte) error {
	wire := dotStuffed(body)
	if bytes.HasPrefix(wire, []byte(".\r\n")) {
		return fmt.Errorf("wire form of %q starts with the end of data", body)
	}
	if i := bytes.Index(wire, []byte("\r\n.\r\n")); i != len(wire)-5 {
		return fmt.Errorf("wire form %q has an end of data at %d of %d", wire, i, len(wire))
	}
	back, err := io.ReadAll(textproto.NewReader(bufio.NewReader(bytes.NewReader(wire))).DotReader())
	if err != nil {
		return fmt.Errorf("reading back %q: %v", wire, err)
	}
	want := bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")) // DotReader gives LF endings
	if len(body) == 0 {
		want = []byte("\n") // the DotWriter sends an empty body as one empty line
	}
	if !bytes.Equal(back, want) {
		return fmt.Errorf("relay would read %q for %q", back, body)
	}
	return nil
}

var dataSeeds = []string{
	"",
	"Subject: x\r\n\r\nhello\r\n",
	"a\nb\n",
	"a\rb\r",
	"a\r\r\nb",
	"x\r\r\n",
	"line\r\r\n.dot\r\n",
	"a\r\r\r\n.\r\n..\r\n",
	".\rx\r\n",
	"\n.\n",
	"\r\n.\n",
	"\n.\r\n",
	"\r.\r",
	".\r\n",
	".",
	"..\r\n.\r\n",
	"first\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsecond\r\n.\r\n",
	"a\x00b",
	"caf\xc3\xa9\xff\n",
	strings.Repeat("x", 10000) + "\r\n",
}

// FuzzNormalizer: whatever the bytes and however they are split into
// writes, the normaliser's output equals refNormalize, holds no bare CR or
// LF, ends with CRLF, and goes on the wire with its only end of data at the
// end. Text that already has CRLF endings comes out unchanged. NUL and
// 8-bit octets are noted.
func FuzzNormalizer(f *testing.F) {
	for i, s := range dataSeeds {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var r io.Reader = bytes.NewReader(in)
		if chunk%4 == 0 {
			r = iotest.OneByteReader(r)
		} else {
			r = &chunkReader{r: r, n: int(chunk)}
		}
		n, got, err := readNormalized(r, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := refNormalize(in); !bytes.Equal(got, want) {
			t.Fatalf("normalised %q to %q, want %q", in, got, want)
		}
		if err := checkCRLFOnly(got); err != nil {
			t.Fatal(err)
		}
		if err := checkWire(got); err != nil {
			t.Fatal(err)
		}
		if isCRLFText(in) && !bytes.Equal(got, in) {
			t.Fatalf("CRLF text %q changed to %q", in, got)
		}
		if n.nul != (bytes.IndexByte(in, 0) >= 0) {
			t.Errorf("nul = %v for %q", n.nul, in)
		}
		if eight := slices.ContainsFunc(in, func(c byte) bool { return c >= 0x80 }); n.eightBit != eight {
			t.Errorf("eightBit = %v for %q", n.eightBit, in)
		}
		// With a limit, the output is refused exactly when it is longer.
		if limit := int64(chunk); limit > 0 {
			_, got, err := readNormalized(bytes.NewReader(in), limit)
			if tooLong := int64(len(refNormalize(in))) > limit; tooLong != errors.Is(err, errTooLarge) {
				t.Errorf("limit %d, output %d bytes: err %v", limit, len(refNormalize(in)), err)
			} else if !tooLong && !bytes.Equal(got, refNormalize(in)) {
				t.Errorf("limit %d changed the output", limit)
			}
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

// isCRLFText reports ordinary text: every line ends with CRLF, there is no
// other CR or LF.
func isCRLFText(b []byte) bool {
	return len(b) > 0 && bytes.HasSuffix(b, []byte("\r\n")) && checkCRLFOnly(b) == nil
}

// refReadInput is readInput's specification: without ignoreDots, the input
// ends before the first line (ended by LF) that holds only "." or ".\r",
// or at a last line "." without a line ending; then refNormalize.
func refReadInput(in []byte, ignoreDots bool) []byte {
	if !ignoreDots {
		lines := bytes.SplitAfter(in, []byte("\n"))
		for i, l := range lines {
			s := string(l)
			if s == ".\n" || s == ".\r\n" || s == "." && i == len(lines)-1 {
				in = bytes.Join(lines[:i], nil)
				break
			}
		}
	}
	return refNormalize(in)
}

// FuzzReadInput: sendmail's reading of standard input matches
// refReadInput, and what it returns has CRLF endings only.
func FuzzReadInput(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s), false, int64(0))
		f.Add([]byte(s), true, int64(0))
	}
	f.Add([]byte(strings.Repeat("y", 70<<10)+"\n.\nrest\n"), false, int64(0)) // past bufio's buffer
	f.Add([]byte("abc\r\ndef\r\n"), false, int64(5))
	f.Fuzz(func(t *testing.T, in []byte, ignoreDots bool, max int64) {
		max = max % 4096
		if max < 0 {
			max = -max
		}
		got, err := readInput(bytes.NewReader(in), ignoreDots, max)
		want := refReadInput(in, ignoreDots)
		switch {
		case max > 0 && int64(len(want)) > max:
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("%d bytes over a limit of %d: err %v", len(want), max, err)
			}
		case bytes.IndexByte(want, 0) >= 0:
			if !errors.Is(err, ErrBadMessage) || !strings.Contains(err.Error(), "NUL") {
				t.Fatalf("NUL in %q: err %v", want, err)
			}
		case err != nil:
			t.Fatalf("readInput(%q, %v): %v", in, ignoreDots, err)
		case !bytes.Equal(got, want):
			t.Fatalf("readInput(%q, %v) = %q, want %q", in, ignoreDots, got, want)
		default:
			if err := checkCRLFOnly(got); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzPrepare: whatever sendmail's standard input and command line, Prepare
// either fails with one of its documented errors, or returns a message
// whose body has CRLF endings only, whose header has From, Date and
// Message-ID and no Bcc or Resent-Bcc, and whose envelope holds only addresses
// checkAddress accepts, with no control characters: nothing from -f, -F or
// an address can start a new header field or SMTP command.
func FuzzPrepare(f *testing.F) {
	f.Add([]byte("To: a@example.net\nSubject: hi\n\nbody\n"), "s@example.org", "Full Name", "b@example.net", true, false)
	f.Add([]byte("From x Mon Jan  1 00:00:00 2024\nSubject: mbox\n\n"), "", "", "root", false, true)
	f.Add([]byte("Subject: x\n"), "<>", "", "a@example.net, b@example.net", false, false)
	f.Add([]byte("Bcc: hidden@example.net\nCc: \"Q, R\" <q@example.net>\n\n"), "s@example.org", "", "", true, false)
	f.Add([]byte("Resent-Date: x\nResent-Bcc: hidden@example.net\nTo: first@example.net\n\n"), "s@example.org", "", "", true, false)
	f.Add([]byte("To: a@example.net\rRCPT TO:<evil@example.com>\n\n"), "s@example.org", "", "", true, false)
	f.Add([]byte("x"), "a@example.org\r\nRCPT TO:<e@example.com>", "", "b@example.net", false, false)
	f.Add([]byte("x"), "a@example.org", "Name\r\nBcc: e@example.com", "b@example.net", false, false)
	f.Add([]byte("x"), "a@example.org", "", "b@example.net\nX-Evil: 1", false, false)
	f.Add([]byte("no header at all\n"), "a@example.org", "", "-oQ/tmp/x@example.net", false, false)
	f.Add([]byte(""), "a@example.org", "", "caf\xe9@example.net", false, false)
	f.Add([]byte("To: \xff@example.net\n\n"), "a@example.org", "", "", true, false)
	f.Fuzz(func(t *testing.T, in []byte, from, fullName, rcpt string, extract, ignoreDots bool) {
		o := PrepareOptions{
			From: from, FullName: fullName, ExtractRecipients: extract, IgnoreDots: ignoreDots,
			User: "user", Hostname: "host.example", Now: time.Unix(1700000000, 0),
		}
		if rcpt != "" {
			o.Recipients = []string{rcpt}
		}
		p, err := Prepare(bytes.NewReader(in), o)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrBadAddress) && !errors.Is(err, ErrNoRecipients) {
				t.Fatalf("undocumented error %v", err)
			}
			if (hasControl(from) || hasControl(fullName)) && !errors.Is(err, ErrBadAddress) {
				t.Fatalf("control character in -f %q or -F %q: err %v, want ErrBadAddress", from, fullName, err)
			}
			return
		}
		if hasControl(from) || hasControl(fullName) || hasControl(rcpt) {
			t.Fatalf("accepted a control character: -f %q -F %q rcpt %q", from, fullName, rcpt)
		}
		if err := checkCRLFOnly(p.Body); err != nil {
			t.Fatal(err)
		}
		if p.From != "" {
			if err := checkAddress(p.From); err != nil {
				t.Fatalf("sender %q: %v", p.From, err)
			}
		}
		if len(p.Recipients) == 0 {
			t.Fatal("no recipients, and no error")
		}
		seen := map[string]bool{}
		for _, r := range p.Recipients {
			if err := checkAddress(r); err != nil {
				t.Fatalf("recipient %q: %v", r, err)
			}
			if strings.ContainsAny(r, " <>\"") {
				t.Fatalf("recipient %q would not survive RCPT TO:<…>", r)
			}
			if seen[addressKey(r)] {
				t.Fatalf("recipient %q twice in %q", r, p.Recipients)
			}
			seen[addressKey(r)] = true
		}
		header, _, ok := bytes.Cut(p.Body, []byte("\r\n\r\n"))
		if !ok {
			header = p.Body // a header block only, ending with the empty line
		}
		fields, _ := splitHeader(append(header, "\r\n\r\n"...))
		have := map[string]bool{}
		for _, fl := range fields {
			have[strings.ToLower(fl.name)] = true
		}
		for _, name := range []string{"from", "date", "message-id"} {
			if !have[name] {
				t.Fatalf("header lacks %s: %q", name, header)
			}
		}
		if have["bcc"] || have["resent-bcc"] {
			t.Fatalf("Bcc or Resent-Bcc left in %q", header)
		}
	})
}

// FuzzAddress: an address checkAddress accepts is one relayq can put in
// MAIL FROM:<…> or RCPT TO:<…> safely: no control characters, spaces,
// brackets or quotes, valid UTF-8, within RFC 5321's lengths, local part not
// starting with '-'. parseAddressList returns only such addresses, and
// they parse back to themselves.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"a@example.net", "root", "Name <a@example.net>, b@example.net", `"Q, R" <q@example.net>`,
		"a@[192.0.2.1]", "a@[IPv6:2001:db8::1]", "caf\xc3\xa9@example.net", "\xff@example.net",
		"-oQ/tmp/x@example.net", "a..b@example.net", "a@b@example.net", "a@example.net\r\nRCPT TO:<e@x>",
		"(comment) a@example.net", "<a@example.net>", strings.Repeat("l", 65) + "@example.net",
		"a@" + strings.Repeat("d.", 130) + "net", "a b@example.net", "a@exa mple.net", "a@-example.net",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := checkAddress(s); err == nil {
			if err := safeOnTheWire(s); err != nil {
				t.Fatalf("checkAddress accepted %q: %v", s, err)
			}
		}
		list, err := parseAddressList(s, "host.example")
		if err != nil {
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("parseAddressList(%q): undocumented error %v", s, err)
			}
			return
		}
		if hasControl(s) {
			t.Fatalf("parseAddressList accepted control characters in %q", s)
		}
		for _, a := range list {
			if err := safeOnTheWire(a); err != nil {
				t.Fatalf("parseAddressList(%q) gave %q: %v", s, a, err)
			}
			again, err := parseAddressList(a, "other.example")
			if err != nil || len(again) != 1 || again[0] != a {
				t.Fatalf("%q (from %q) parses back as %q, %v", a, s, again, err)
			}
		}
	})
}

// safeOnTheWire checks what checkAddress promises.
func safeOnTheWire(a string) error {
	at := strings.LastIndexByte(a, '@')
	switch {
	case hasControl(a) || strings.ContainsAny(a, " <>\"\\"):
		return errors.New("a character that could break the command")
	case !strings.ContainsRune(a, '@') || at == 0 || at == len(a)-1:
		return errors.New("not local@domain")
	case len(a) > maxPath || at > maxLocalPart:
		return errors.New("too long")
	case a[0] == '-':
		return errors.New("starts with '-'")
	case !utf8.ValidString(a):
		return errors.New("invalid UTF-8")
	}
	return nil
}

// FuzzIntakeData: any DATA section, dot-stuffed as RFC 5321 says, sent to
// a real Server on its Unix socket, is either queued or refused as
// documented (NUL octets: 554 5.6.0), never anything else; and what is
// queued is exactly the normalised DATA: CRLF endings only, nothing left
// that could end DATA on the relay, CRLF text unchanged.
func FuzzIntakeData(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s))
	}
	q := openQueue(f, queue.Options{})
	srv := startServer(f, Options{Queue: q, Listen: []string{}, ReadTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	sock := srv.Addrs()[0].String()
	f.Fuzz(func(t *testing.T, in []byte) {
		wire, dataRead := stuffForIntake(in)
		nc, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		c := newClient(t, nc)
		c.run([]step{
			{expect: "220"},
			{send: "EHLO fuzz.example", expect: "250"},
			{send: "MAIL FROM:<a@example.org>", expect: "250"},
			{send: "RCPT TO:<b@example.net>", expect: "250"},
			{send: "DATA", expect: "354"},
		})
		if _, err := nc.Write(wire); err != nil {
			t.Fatal(err)
		}
		reply, err := c.reply()
		if err != nil {
			t.Fatalf("no reply to the DATA %q: %v", wire, err)
		}
		want := refNormalize(dataRead)
		if bytes.IndexByte(in, 0) >= 0 {
			if !strings.HasPrefix(reply, "554 5.6.0") {
				t.Fatalf("NUL octets: reply %q, want 554 5.6.0", reply)
			}
			return
		}
		id, ok := strings.CutPrefix(reply, "250 2.0.0 Ok: queued as ")
		if !ok {
			t.Fatalf("DATA %q: reply %q, want 250", wire, reply)
		}
		got, err := io.ReadAll(q.Body(id))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkStamped(got, want, id); err != nil {
			t.Fatalf("DATA %.200q: %v", wire, err)
		}
		if err := checkCRLFOnly(got); err != nil {
			t.Fatal(err)
		}
		if err := checkWire(got); err != nil {
			t.Fatal(err)
		}
		if isCRLFText(in) && !bytes.HasSuffix(got, in) {
			t.Fatalf("CRLF text %.200q queued as %.200q", in, got)
		}
	})
}

// checkStamped checks that a message queued as id is msg with the headers
// the intake adds before it: Received naming relayq and id, Date and
// Message-ID (unstamp), and an empty line when msg does not begin with a
// header field or the empty line that ends a header.
func checkStamped(got, msg []byte, id string) error {
	if !bytes.HasPrefix(got, []byte("Received: ")) {
		return fmt.Errorf("queued %.200q, without a Received header first", got)
	}
	want := string(msg)
	if fields, _ := splitHeader(msg); len(fields) == 0 && len(msg) > 0 && !bytes.HasPrefix(msg, []byte("\r\n")) {
		want = "\r\n" + want
	}
	if rest := unstamp(id, string(got)); rest != want {
		return fmt.Errorf("queued %.200q: after the added headers %.200q, want %.200q", got, rest, want)
	}
	return nil
}

// stuffForIntake turns in into a DATA section as a client following RFC
// 5321 §4.5.2 sends it: a line (after CRLF, or at the start) that begins
// with "." gets another, and "CRLF . CRLF" ends it. It returns that and
// the message the server should read: in, plus the CRLF of the end of data
// when in does not end with one.
func stuffForIntake(in []byte) (wire, read []byte) {
	lineStart := true
	for i, c := range in {
		if lineStart && c == '.' {
			wire = append(wire, '.')
		}
		wire = append(wire, c)
		lineStart = c == '\n' && i > 0 && in[i-1] == '\r'
	}
	read = in
	if len(in) > 0 && !bytes.HasSuffix(in, []byte("\r\n")) {
		wire = append(wire, '\r', '\n')
		read = append(bytes.Clone(in), '\r', '\n')
	}
	return append(wire, ".\r\n"...), read
}
