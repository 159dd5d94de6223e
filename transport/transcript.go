package transport

import "strconv"

// Every Send reports the SMTP/LMTP exchange it had with the relay
// (Result.Transcript, Error.Transcript), so that the queue can show why
// the last attempt of a message went the way it did (`relayq queue show`).
// The wire (debug.go) feeds each line to its connection's transcript, with
// the redactions of the debug log: never an AUTH response, the body as its
// size. A transcript costs one append per line to a buffer the connection
// reuses, and one copy per Send.
//
// It is bounded: each line keeps at most maxTranscriptLine bytes, and a
// transcript at most maxTranscript; beyond that the first lines (the
// session's start) and the latest ones (how it ended) are kept and the
// lines in between are replaced by one saying how many were left out.
const (
	maxTranscript     = 8 << 10
	maxTranscriptHead = maxTranscript / 2
	maxTranscriptLine = 512
)

// Transcript line prefixes besides dirClient and dirServer: a note relayq
// adds about the connection (connected, TLS, reused from the pool).
const dirNote = "*"

// transcript collects the lines of a connection's exchange since it was
// last taken. Each line is "C: …", "S: …" or "* …", ending in '\n'. Its
// user serialises access (the wire's mutex, or the goroutine that holds
// the connection).
type transcript struct {
	buf []byte
	// head, once the transcript is full, is the length of the first
	// lines, which are kept; lines after it are dropped oldest first.
	head    int
	omitted int // lines dropped
}

// add appends one line, with the prefix dir.
func (tr *transcript) add(dir string, line []byte) { addLine(tr, dir, line) }

// addString is add for a line relayq makes up.
func (tr *transcript) addString(dir, line string) { addLine(tr, dir, line) }

// addLine is add and addString: generic so that neither converts (and
// allocates) its line.
func addLine[T string | []byte](tr *transcript, dir string, line T) {
	cut := len(line) > maxTranscriptLine
	if cut {
		line = line[:maxTranscriptLine]
	}
	need := len(dir) + 2 + len(line) + len(" …(truncated)") + 1
	if len(tr.buf)+need > maxTranscript {
		tr.makeRoom(need)
	}
	tr.buf = append(tr.buf, dir...)
	if dir != dirNote {
		tr.buf = append(tr.buf, ':')
	}
	tr.buf = append(tr.buf, ' ')
	tr.buf = append(tr.buf, line...)
	if cut {
		tr.buf = append(tr.buf, " …(truncated)"...)
	}
	tr.buf = append(tr.buf, '\n')
}

// addBody records the message body as its size, and the final dot after
// DATA (dot; a BDAT chunk has none).
func (tr *transcript) addBody(size int64, dot bool) {
	var b [64]byte
	line := append(b[:0], "<message body: "...)
	line = strconv.AppendInt(line, size, 10)
	line = append(line, " bytes>"...)
	tr.add(dirClient, line)
	if dot {
		tr.addString(dirClient, ".")
	}
}

// makeRoom drops the oldest lines after the head until need more bytes fit.
func (tr *transcript) makeRoom(need int) {
	if tr.omitted == 0 && tr.head == 0 {
		// The first time: keep the lines that fit in maxTranscriptHead.
		for i, ch := range tr.buf[:min(len(tr.buf), maxTranscriptHead)] {
			if ch == '\n' {
				tr.head = i + 1
			}
		}
	}
	drop := tr.head
	for drop < len(tr.buf) && len(tr.buf)-(drop-tr.head)+need > maxTranscript {
		end := drop
		for end < len(tr.buf) && tr.buf[end] != '\n' {
			end++
		}
		drop = end + 1
		tr.omitted++
	}
	tr.buf = append(tr.buf[:tr.head], tr.buf[drop:]...)
}

// take returns the transcript (without the last line's '\n') and starts
// a new one, keeping the buffer.
func (tr *transcript) take() string {
	if len(tr.buf) == 0 {
		return ""
	}
	var s string
	if tr.omitted == 0 {
		s = string(tr.buf[:len(tr.buf)-1])
	} else {
		s = string(tr.buf[:tr.head]) + dirNote + " … " + strconv.Itoa(tr.omitted) +
			" line(s) left out …\n" + string(tr.buf[tr.head:len(tr.buf)-1])
	}
	tr.buf, tr.head, tr.omitted = tr.buf[:0], 0, 0
	return s
}
