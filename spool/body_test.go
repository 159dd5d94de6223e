package spool

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestNormalizer(t *testing.T) {
	tests := []struct {
		in, want      string
		nul, eightBit bool
	}{
		{in: "", want: ""},
		{in: "a\r\nb\r\n", want: "a\r\nb\r\n"},
		{in: "a\nb\n", want: "a\r\nb\r\n"},
		{in: "a\rb\r", want: "a\r\nb\r\n"},
		{in: "a\r\r\nb", want: "a\r\n\r\nb\r\n"},
		{in: "a\n\rb", want: "a\r\n\r\nb\r\n"},
		{in: "\n.\n", want: "\r\n.\r\n"},
		{in: "\r\n.\n", want: "\r\n.\r\n"},
		{in: "\n.\r\n", want: "\r\n.\r\n"},
		{in: "\r.\r", want: "\r\n.\r\n"},
		{in: "no newline", want: "no newline\r\n"},
		{in: "a\x00b", want: "a\x00b\r\n", nul: true},
		{in: "caf\xc3\xa9\n", want: "caf\xc3\xa9\r\n", eightBit: true},
	}
	for _, tt := range tests {
		// One byte at a time too: a CR at the end of one write and an LF at
		// the start of the next are one line ending.
		for _, oneByte := range []bool{false, true} {
			r := strings.NewReader(tt.in)
			var n *normalizer
			var got []byte
			var err error
			if oneByte {
				n, got, err = readNormalized(iotest.OneByteReader(r), 0)
			} else {
				n, got, err = readNormalized(r, 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want || n.nul != tt.nul || n.eightBit != tt.eightBit {
				t.Errorf("normalise(%q, one byte %v) = %q nul %v 8bit %v; want %q %v %v",
					tt.in, oneByte, got, n.nul, n.eightBit, tt.want, tt.nul, tt.eightBit)
			}
		}
	}
}

func TestNormalizerLimit(t *testing.T) {
	tests := []struct {
		in  string
		max int64
		ok  bool
	}{
		{"123456\r\n", 8, true},
		{"1234567\r\n", 8, false},
		{"123456\n", 8, true},
		{"1234567\n", 8, false}, // 9 bytes once the LF is CRLF
		{"123456\r", 8, true},
		{"1234567\r", 8, false}, // the final CR becomes CRLF
		{"123456", 8, true},
		{"1234567", 8, false}, // the last line gets its CRLF
	}
	for _, tt := range tests {
		_, _, err := readNormalized(strings.NewReader(tt.in), tt.max)
		if ok := err == nil; ok != tt.ok || err != nil && !errors.Is(err, errTooLarge) {
			t.Errorf("normalise(%q, max %d): %v, want ok %v", tt.in, tt.max, err, tt.ok)
		}
	}
}

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

// TestHasEightBit: an octet >= 0x80 anywhere, in the words and the tail.
func TestHasEightBit(t *testing.T) {
	for n := range 20 {
		p := bytes.Repeat([]byte("a"), n)
		if hasEightBit(p) {
			t.Errorf("%d ASCII bytes: 8-bit", n)
		}
		for i := range n {
			q := bytes.Clone(p)
			q[i] = 0x80
			if !hasEightBit(q) {
				t.Errorf("0x80 at %d of %d: not 8-bit", i, n)
			}
		}
	}
}
