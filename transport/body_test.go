package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"testing"
	"testing/iotest"
)

// dotWriterBytes is what go-smtp sent for body before writeBody: the body
// through net/textproto's DotWriter, closed.
func dotWriterBytes(t testing.TB, body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	if _, err := dw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// writeBodyBytes is what the relay gets now: writeBody's writes, then the
// DataCommand's Close on a dotWriter that was given nothing.
func writeBodyBytes(t testing.TB, r io.Reader) []byte {
	var out bytes.Buffer
	if err := writeBody(&out, r, nil); err != nil {
		t.Fatal(err)
	}
	return append(out.Bytes(), "\r\n.\r\n"...)
}

// checkStuffing: body reaches the relay byte for byte as the dotWriter sent
// it, whether it is read whole, a byte at a time, or in odd pieces.
func checkStuffing(t *testing.T, body []byte) {
	t.Helper()
	want := dotWriterBytes(t, body)
	for name, r := range map[string]io.Reader{
		"whole":   bytes.NewReader(body),
		"bytes":   iotest.OneByteReader(bytes.NewReader(body)),
		"halves":  iotest.HalfReader(bytes.NewReader(body)),
		"dataEOF": iotest.DataErrReader(bytes.NewReader(body)),
	} {
		if got := writeBodyBytes(t, r); !bytes.Equal(got, want) {
			t.Errorf("%s: body %q\nsent    %q\nwant    %q", name, clip(body), clip(got), clip(want))
		}
	}
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return append(append(b[:100:100], "…"...), b[len(b)-100:]...)
	}
	return b
}

// TestStufferMatchesDotWriter: dot-stuffing, CRLF, bare LF and CR, and the
// end of the body (after CRLF, mid-line, after a CR, empty) come out as
// the dotWriter wrote them, across the reads' and the writes' boundaries.
func TestStufferMatchesDotWriter(t *testing.T) {
	for _, body := range []string{
		"", "\r\n", ".", ".\r\n", "..\r\n", ".foo\r\n", "a\r\n.\r\n", "a\r\n.\r\nb\r\n",
		"Subject: x\r\n\r\nbody\r\n", "no line ending", "ends with CR\r", "bare\nLF\n.dot\n",
		"bare\rCR\r.dot\r", "\r\r\n.\r\n", "a\r\r\r\n", "\n", "\r", ".\n.\r.", "x\r\n..\r\n.\r\n",
		"\xc3\xa9t\xc3\xa9\r\n.\xff\r\n",
	} {
		checkStuffing(t, []byte(body))
	}
	// Bodies larger than a chunk, with a line start, a CR or a dot at
	// and around every chunk boundary.
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\r\n"
	big := strings.Repeat(line, 3*bodyChunk/len(line)+3)
	checkStuffing(t, []byte(big))
	for _, at := range []int{bodyChunk - 2, bodyChunk - 1, bodyChunk, bodyChunk + 1, 2 * bodyChunk} {
		for _, ins := range []string{"\r\n.", ".", "\r", "\n", "\r\n"} {
			b := []byte(big)
			copy(b[at:], ins)
			checkStuffing(t, b)
		}
	}
	// Every byte a bare LF: the stuffed body is twice as long.
	checkStuffing(t, bytes.Repeat([]byte("\n"), 2*bodyChunk+5))
	checkStuffing(t, bytes.Repeat([]byte(".\n"), bodyChunk+3))
	// Random bodies of the bytes that matter.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = ".\r\nx"[rng.IntN(4)]
		}
		checkStuffing(t, b)
	}
}

// FuzzStuffer: any body goes out as the dotWriter would send it.
func FuzzStuffer(f *testing.F) {
	for _, s := range []string{"", ".\r\n", "a\r\r\n.\r\n", "a\n.\n", "x\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := writeBodyBytes(t, iotest.HalfReader(bytes.NewReader(body))), dotWriterBytes(t, body); !bytes.Equal(got, want) {
			t.Errorf("body %q\nsent %q\nwant %q", body, got, want)
		}
	})
}

// TestWriteBodyErrors: a failure to read the message is a *bodyReadError
// naming it; a failure to write is returned as it is.
func TestWriteBodyErrors(t *testing.T) {
	boom := errors.New("boom")
	err := writeBody(io.Discard, io.MultiReader(strings.NewReader("a\r\n"), iotest.ErrReader(boom)), nil)
	var re *bodyReadError
	if !errors.As(err, &re) || !errors.Is(err, boom) || err.Error() != "reading the message: boom" {
		t.Errorf("read failure: %v (%T)", err, err)
	}
	err = writeBody(failingWriter{boom}, strings.NewReader("a\r\nb\r\n"), nil)
	if !errors.Is(err, boom) || errors.As(err, &re) {
		t.Errorf("write failure: %v (%T)", err, err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// TestIndexLineEnd: the first CR or LF, wherever it falls against the
// windows the search goes by.
func TestIndexLineEnd(t *testing.T) {
	for _, n := range []int{0, 1, 7, 4095, 4096, 4097, 9000} {
		for _, tail := range []string{"", "\r", "\n", "\r\n", "\n\r", "x\r", "x\n"} {
			p := []byte(strings.Repeat("a", n) + tail)
			if got, want := indexLineEnd(p), bytes.IndexAny(p, "\r\n"); got != want {
				t.Errorf("%d bytes then %q: %d, want %d", n, tail, got, want)
			}
		}
	}
}
