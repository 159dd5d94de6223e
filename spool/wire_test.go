package spool

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-smtp"
)

// TestDataLineEndings: whatever CRs come before it, a line that starts
// after CRLF is a line: its stuffed dot is removed and "." CRLF ends the
// data. go-smtp v0.25.1 alone keeps both dots after "CR CR LF", never sees
// the end of data after "CR CR LF" (the client waits for its reply until
// the read timeout), and drops the CR of a line ". CR x".
func TestDataLineEndings(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"stuffed line after CR CR LF", "Subject: x\r\n\r\nline\r\r\n..dot\r\n.\r\n", "Subject: x\r\n\r\nline\r\n\r\n.dot\r\n"},
		{"end of data after CR CR LF", "Subject: x\r\n\r\nline\r\r\n.\r\n", "Subject: x\r\n\r\nline\r\n\r\n"},
		{"CR CR CR LF", "Subject: x\r\n\r\na\r\r\r\n..b\r\n.\r\n", "Subject: x\r\n\r\na\r\n\r\n\r\n.b\r\n"},
		{"CR after a leading dot is text", "Subject: x\r\n\r\n.\rx\r\n.\r\n", "Subject: x\r\n\r\n\r\nx\r\n"},
		{"dot after a bare CR is not stuffing", "Subject: x\r\n\r\na\r.b\r\n.\r\n", "Subject: x\r\n\r\na\r\n.b\r\n"},
		{"dot line after a bare LF does not end the data", "Subject: x\r\n\r\na\n.\nb\r\n.\r\n", "Subject: x\r\n\r\na\r\n.\r\nb\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{})
			c := newClient(t, dial(t, s, "unix"))
			c.run(append(toRcpt(), []step{
				{send: "DATA", expect: "354"},
				{raw: tc.data, expect: "250 2.0.0 Ok: queued as"},
				{send: "NOOP", expect: "250"},
			}...))
			_, bodies := queued(t, s.opts.Queue)
			if len(bodies) != 1 || bodies[0] != tc.want {
				t.Fatalf("queued %q, want one message %q", bodies, tc.want)
			}
		})
	}
}

// toRcpt is a dialog up to a recipient accepted.
func toRcpt() []step {
	return []step{
		{expect: "220"},
		{send: "EHLO client.example", expect: "250"},
		{send: "MAIL FROM:<a@example.org>", expect: "250"},
		{send: "RCPT TO:<b@example.net>", expect: "250"},
	}
}

// TestDataSentBefore354: a client that sends its message with DATA,
// without waiting for the 354, and pipelines a command after the end of
// data, gets the message queued as sent and its command answered.
func TestDataSentBefore354(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, dial(t, s, "unix"))
	c.run(append(toRcpt(), []step{
		{raw: "DATA\r\nSubject: x\r\n\r\nline\r\r\n..dot\r\n.\r\nRSET\r\n", expect: "354"},
		{expect: "250 2.0.0 Ok: queued as"},
		{expect: "250"}, // RSET
		{send: "QUIT", expect: "221"},
	}...))
	_, bodies := queued(t, s.opts.Queue)
	if want := "Subject: x\r\n\r\nline\r\n\r\n.dot\r\n"; len(bodies) != 1 || bodies[0] != want {
		t.Fatalf("queued %q, want one message %q", bodies, want)
	}
}

// TestGreetingNamesServer: the first line of the reply to EHLO and to HELO
// begins with the server's name (RFC 5321 §4.1.1.1); go-smtp writes
// "250-Hello <client>", which clients read as a server called "Hello".
func TestGreetingNamesServer(t *testing.T) {
	s := startServer(t, Options{Hostname: "mx.relayq.test"})
	for _, network := range []string{"unix", "tcp"} {
		for _, cmd := range []string{"EHLO", "HELO"} {
			nc := dial(t, s, network)
			c := newClient(t, nc)
			c.run([]step{{expect: "220 mx.relayq.test"}})
			io.WriteString(nc, cmd+" client.example\r\n")
			line, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(line, "250-mx.relayq.test ") && !strings.HasPrefix(line, "250 mx.relayq.test") {
				t.Errorf("%s over %s: first reply line %q, want 250 with the server's name", cmd, network, line)
			}
		}
	}
}

// TestReadDataAsGoSMTP: readData, which decodes DATA straight from the
// network, hands the session exactly what go-smtp's reader got from wire
// before (the message re-encoded, then de-stuffed up to the end of data),
// whatever the bytes and however the network splits them; go-smtp is left
// ". CRLF" and then the commands that follow, line by line. A line over
// the limit fails as go-smtp's line limit failed on the re-encoded stream.
func TestReadDataAsGoSMTP(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	inputs := []string{
		"Subject: x\r\n\r\nline\r\r\n..dot\r\n.\r\nNOOP\r\n",
		".\r\n", "..\r\n.\r\n", "a\r.b\r\n.\r\n", "a\n.\nb\r\n.\r\n", ".\rx\r\n.\r\n",
		strings.Repeat("0123456789\r\n.", 5000) + "\r\n.\r\nRSET\r\nQUIT\r\n",
	}
	for range 400 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = ".\r\nx"[rng.IntN(4)]
		}
		inputs = append(inputs, string(b)+"\r\n.\r\nNOOP\r\n")
	}
	for _, in := range inputs {
		for _, maxLine := range []int{0, 5, 12, 1 << 20} {
			chunk := 1 + rng.IntN(len(in))
			wantBody, wantRest, wantErr := oldDataPath(t, in, chunk, maxLine)
			w := wire{}
			w.reply([]byte("354 go ahead\r\n"))
			var body bytes.Buffer
			next := chunks(in, chunk)
			err := w.readData(&body, maxLine, next)
			if (err != nil) != (wantErr != nil) || err == nil && body.String() != wantBody {
				t.Fatalf("input %q (reads of %d, lines up to %d):\nreadData %q, %v\nwant     %q, %v", in, chunk, maxLine, body.String(), err, wantBody, wantErr)
			}
			if err != nil {
				if _, rerr := w.read(make([]byte, 100), next); rerr != smtp.ErrTooLongLine {
					t.Fatalf("input %q: a read after the long line: %v, want ErrTooLongLine", in, rerr)
				}
				continue
			}
			if rest := readAll(t, &w, next); rest != ".\r\n"+wantRest {
				t.Fatalf("input %q: go-smtp reads %q after readData, want %q", in, rest, ".\r\n"+wantRest)
			}
		}
	}
}

// oldDataPath is what go-smtp made of in before readData: wire's
// re-encoding of the DATA section, read through go-smtp's line limit and
// then its dot reader (for the well-formed stream wire hands over: each
// line's leading dot removed, up to the line "."). rest is what wire
// handed over after the end of data.
func oldDataPath(t *testing.T, in string, chunk, maxLine int) (body, rest string, err error) {
	w := wire{}
	w.reply([]byte("354 go ahead\r\n"))
	next := chunks(in, chunk)
	var stuffed []byte
	for !bytes.HasSuffix(stuffed, []byte("\r\n.\r\n")) && !bytes.Equal(stuffed, []byte(".\r\n")) {
		p := make([]byte, 1+len(in)%7) // go-smtp's buffer: any size
		n, err := w.read(p, next)
		if err != nil {
			t.Fatalf("input %q: wire.read: %v", in, err)
		}
		stuffed = append(stuffed, p[:n]...)
	}
	cur := 1 // after "DATA\r\n", as go-smtp's lineLimitReader counts
	for _, c := range stuffed {
		if c == '\n' {
			cur = 0
		}
		if cur++; maxLine > 0 && cur > maxLine {
			return "", "", smtp.ErrTooLongLine
		}
	}
	var out []byte
	for _, line := range bytes.SplitAfter(stuffed, []byte("\r\n")) {
		if string(line) == ".\r\n" {
			break
		}
		out = append(out, bytes.TrimPrefix(line, []byte("."))...)
	}
	return string(out), readAll(t, &w, next), nil
}

// chunks is a network that delivers in in reads of at most n bytes.
func chunks(in string, n int) func([]byte) (int, error) {
	r := iotest.HalfReader(&chunkReader{r: strings.NewReader(in), n: n})
	return r.Read
}

// readAll is what go-smtp reads from w until the network has nothing more.
func readAll(t *testing.T, w *wire, next func([]byte) (int, error)) string {
	var got []byte
	p := make([]byte, 64)
	for {
		n, err := w.read(p, next)
		got = append(got, p[:n]...)
		if err == io.EOF {
			return string(got)
		}
		if err != nil {
			t.Fatalf("wire.read: %v", err)
		}
	}
}

// TestReadDataRefused: when the session refuses the message part-way (its
// normalizer fails: too large, no memory), readData returns at once and
// go-smtp's reader, reading the rest to drop it, finds the client's end of
// data and nothing before it, wherever the refusal fell; the commands
// after it are read as commands.
func TestReadDataRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 400 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = ".\r\nx"[rng.IntN(4)]
		}
		in := string(b) + "\r\n.\r\nNOOP\r\n"
		_, wantRest, _ := oldDataPath(t, in, len(in), 0)
		next := chunks(in, 1+rng.IntN(len(in)))
		w := wire{}
		w.reply([]byte("354 go ahead\r\n"))
		boom := errors.New("refused")
		dst := &failAfter{n: rng.IntN(len(in)), err: boom}
		if err := w.readData(dst, 0, next); err != boom {
			if dst.failed || err != nil {
				t.Fatalf("input %q: readData returned %v", in, err)
			}
			continue // the whole message fitted
		}
		rest := readAll(t, &w, next)
		end := goSMTPDataEnd(rest)
		if end < 0 || rest[end:] != wantRest {
			t.Fatalf("input %q, refused after %d bytes: go-smtp reads %q, whose data ends at %d; want the data to end before %q", in, dst.n, rest, end, wantRest)
		}
	}
}

// failAfter takes n bytes, then fails.
type failAfter struct {
	n      int
	err    error
	failed bool
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		f.failed = true
		return 0, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// goSMTPDataEnd is where go-smtp's dataReader (v0.25.1 data.go, starting
// at a line start) finds the end of data in s: the index after ". CRLF",
// or -1.
func goSMTPDataEnd(s string) int {
	const (
		beginLine = iota
		dot
		dotCR
		cr
		data
	)
	state := beginLine
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch state {
		case beginLine:
			switch c {
			case '.':
				state = dot
			case '\r':
				state = cr
			default:
				state = data
			}
		case dot:
			state = data
			if c == '\r' {
				state = dotCR
			}
		case dotCR:
			if c == '\n' {
				return i + 1
			}
			state = data
		case cr:
			state = data
			if c == '\n' {
				state = beginLine
			}
		case data:
			if c == '\r' {
				state = cr
			}
		}
	}
	return -1
}

// What readData writes is normalised already: a normalizer given it
// through crlfWriter (in one piece a write) ends with the body and the
// NUL and 8-bit marks that its Write (a line at a time) gives.
func TestCRLFWriterAsNormalizer(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		b := make([]byte, rng.IntN(400))
		for i := range b {
			b[i] = ".\r\nx\x00\xe9"[rng.IntN(6)]
		}
		in := string(b) + "\r\n.\r\nNOOP\r\n"
		read := func(dst func(*normalizer) io.Writer) *normalizer {
			w := wire{}
			w.reply([]byte("354 go ahead\r\n"))
			n := &normalizer{}
			if err := w.readData(dst(n), 0, chunks(in, 1+rng.IntN(len(in)))); err != nil {
				t.Fatalf("input %q: %v", in, err)
			}
			return n
		}
		whole := read(func(n *normalizer) io.Writer { return crlfWriter{n} })
		lines := read(func(n *normalizer) io.Writer { return n })
		got, _ := whole.body()
		want, _ := lines.body()
		if !bytes.Equal(got, want) || whole.nul != lines.nul || whole.eightBit != lines.eightBit {
			t.Fatalf("input %q: crlfWriter gives %q (NUL %v, 8-bit %v), Write %q (NUL %v, 8-bit %v)",
				in, got, whole.nul, whole.eightBit, want, lines.nul, lines.eightBit)
		}
	}
}
