package transport

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestChunkedSameAsData: a relay that offers CHUNKING and PIPELINING gets
// a message of up to maxChunk bytes as MAIL, RCPT and "BDAT <size> LAST"
// with the message, in one write, and stores exactly what a relay without
// CHUNKING stores from the pipelined DATA: the bodies below cover
// dot-stuffing, bare LF, bare CR, CR CR LF, a last line without its line
// ending or with a CR alone, an empty body and none. A larger message (or
// one larger than its Size said) goes with DATA. The transcript has the
// BDAT line and the body's size, none of its lines.
func TestChunkedSameAsData(t *testing.T) {
	bodies := map[string][]byte{
		"dots":              testBody,
		"bare LF":           []byte("Subject: x\n\nline 1\nline 2\n"),
		"bare CR":           []byte("Subject: x\r\n\r\na\rb\r\n"),
		"CR CR LF":          []byte("a\r\r\nb\r\r\r\n\n"),
		"no final newline":  []byte("Subject: x\r\n\r\nlast"),
		"ends with CR":      []byte("Subject: x\r\n\r\nlast\r"),
		"ends with dot":     []byte("Subject: x\r\n\r\n."),
		"empty":             {},
		"nil":               nil,
		"one chunk exactly": bytes.Repeat([]byte("0123456789abcd\r\n"), maxChunk/16),
		"over one chunk":    bytes.Repeat([]byte("0123456789abcd\r\n"), maxChunk/16+1),
	}
	for name, body := range bodies {
		for _, lie := range []bool{false, true} {
			if lie && len(body) <= maxChunk {
				continue
			}
			t.Run(fmt.Sprintf("%s/size lies %v", name, lie), func(t *testing.T) {
				msg := func() *Message {
					m := message("a@example.org", "b@example.net")
					m.Body, m.Size = bytes.NewReader(body), int64(len(body))
					if body == nil {
						m.Body = nil
					}
					if lie {
						m.Size = 100
					}
					return m
				}
				run := func(chunking bool) ([]byte, []string, string) {
					srv := smtptest.NewServer(t, smtptest.Options{Chunking: chunking})
					res := mustSend(t, newTransport(t, srv), msg())
					got := srv.Messages()
					if len(got) != 1 {
						t.Fatalf("chunking %v: %d messages, want 1", chunking, len(got))
					}
					return got[0].Body, srv.Commands(), res.Transcript
				}
				want, _, _ := run(false)
				got, cmds, transcript := run(true)
				if !bytes.Equal(got, want) {
					t.Errorf("stored\nwith BDAT: %q\nwith DATA: %q", got, want)
				}
				chunked := len(body) <= maxChunk && !lie
				bdat := fmt.Sprintf("BDAT %d LAST", len(got))
				wantCmd := "DATA"
				if chunked {
					wantCmd = bdat
				}
				if !slices.Contains(cmds, wantCmd) {
					t.Errorf("commands %q, want %q", cmds, wantCmd)
				}
				if chunked {
					lines := strings.Split(transcript, "\n")
					i := slices.Index(lines, "C: "+bdat)
					if i < 0 || i+1 >= len(lines) || lines[i+1] != fmt.Sprintf("C: <message body: %d bytes>", len(got)) ||
						i+2 >= len(lines) || !strings.HasPrefix(lines[i+2], "S: 250") {
						t.Errorf("transcript without the BDAT line and the body's size after it:\n%s", transcript)
					}
				}
			})
		}
	}
}

// TestChunkedOutcomes: with BDAT, Send reports what it reports with the
// pipelined DATA for each refusal or failure, per recipient and per stage;
// refusals leave no message at the relay; and the next message goes
// through.
func TestChunkedOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		script smtptest.Script
		rcpts  []string
	}{
		{"one recipient refused", smtptest.Script{
			Rcpt: map[string][]smtptest.Step{"c@example.net": {smtptest.Reply(550, "5.1.1 No such user here")}},
		}, []string{"b@example.net", "c@example.net", "b@example.net"}},
		{"MAIL refused", smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(553, "5.1.8 Bad sender")}}, nil},
		{"MAIL 421", smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(421, "4.3.2 Bye")}}, nil},
		{"RCPT 421", smtptest.Script{Rcpt: map[string][]smtptest.Step{"*": {smtptest.Reply(421, "4.3.2 Bye")}}}, nil},
		{"every recipient refused", smtptest.Script{
			Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(2, smtptest.Reply(550, "5.7.1 Relaying denied"))},
		}, []string{"b@example.net", "c@example.net"}},
		{"message refused", smtptest.Script{Body: []smtptest.Step{smtptest.Reply(554, "5.6.0 Content rejected")}}, nil},
		{"message deferred", smtptest.Script{Body: []smtptest.Step{smtptest.Reply(451, "4.3.0 Try later")}}, nil},
		{"dropped before the reply", smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Drop}}}, nil},
		{"malformed reply", smtptest.Script{Body: []smtptest.Step{{Raw: "999 what\r\n"}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcpts := tc.rcpts
			if rcpts == nil {
				rcpts = []string{"b@example.net"}
			}
			run := func(chunking bool) (string, []smtptest.Received) {
				srv := smtptest.NewServer(t, smtptest.Options{Chunking: chunking, Script: tc.script})
				tr := newTransport(t, srv)
				outcome, _ := describe(send(t, tr, message("a@example.org", rcpts...)))
				next, nextErr := send(t, tr, message("n@example.org", "n@example.net"))
				nextOutcome, _ := describe(next, nextErr)
				if chunking && !slices.ContainsFunc(srv.Commands(), func(c string) bool { return strings.HasPrefix(c, "BDAT ") }) {
					t.Errorf("no BDAT sent: %q", srv.Commands())
				}
				return outcome + "\nnext: " + nextOutcome, srv.Messages()
			}
			data, dataMsgs := run(false)
			chunked, chunkedMsgs := run(true)
			// A refusal closes the connection with BDAT (the next message
			// goes on a second one, C2): the IDs differ.
			ids := regexp.MustCompile(`C[0-9]+M[0-9]+`)
			if ids.ReplaceAllString(chunked, "ID") != ids.ReplaceAllString(data, "ID") {
				t.Errorf("outcome\nBDAT: %s\nDATA: %s", chunked, data)
			}
			if len(chunkedMsgs) != len(dataMsgs) {
				t.Fatalf("%d messages taken with BDAT, %d with DATA", len(chunkedMsgs), len(dataMsgs))
			}
			for i := range chunkedMsgs {
				c, d := chunkedMsgs[i], dataMsgs[i]
				if c.From != d.From || !slices.Equal(c.To, d.To) || !bytes.Equal(c.Body, d.Body) {
					t.Errorf("message %d\nBDAT: %+v\nDATA: %+v", i, c, d)
				}
			}
		})
	}
}

// TestChunkNotTakenSentAgain: the relay answers the MAIL of a message sent
// as one chunk on a pooled connection with 421 and closes: it did not take
// the message, so the Send sends it again on a new connection, body and
// all.
func TestChunkNotTakenSentAgain(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Chunking: true, Script: smtptest.Script{
		Mail: []smtptest.Step{{}, smtptest.Reply(421, "4.3.2 Shutting down")},
	}})
	tr := newTransport(t, srv)
	mustSend(t, tr, message("a@example.org", "b@example.net"))
	res := mustSend(t, tr, message("a@example.org", "c@example.net"))
	msgs := srv.Messages()
	if len(msgs) != 2 || !bytes.Equal(msgs[1].Body, testBody) || msgs[1].Conn == msgs[0].Conn {
		t.Fatalf("messages %+v, want the second whole, on a second connection", msgs)
	}
	if !strings.Contains(res.Transcript, "this new one replaces it") {
		t.Errorf("transcript does not tell of the new connection:\n%s", res.Transcript)
	}
}

// TestChunkAfterIdleGoesWithData: a pooled connection idle for chunkIdle
// carries its next message with DATA, so that a relay that closed it is
// found out before the message is sent.
func TestChunkAfterIdleGoesWithData(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Chunking: true})
	tr := newTransport(t, srv)
	mustSend(t, tr, message("a@example.org", "b@example.net"))
	tr.mu.Lock()
	for _, c := range tr.idle {
		c.idleSince = time.Now().Add(-chunkIdle)
	}
	tr.mu.Unlock()
	mustSend(t, tr, message("a@example.org", "c@example.net"))
	var verbs []string
	for _, c := range srv.Commands() {
		if v, _, _ := strings.Cut(c, " "); v == "BDAT" || v == "DATA" {
			verbs = append(verbs, v)
		}
	}
	if !slices.Equal(verbs, []string{"BDAT", "DATA"}) {
		t.Errorf("commands %q: want BDAT, then DATA after the idle time", srv.Commands())
	}
	if msgs := srv.Messages(); len(msgs) != 2 || msgs[0].Conn != msgs[1].Conn {
		t.Errorf("messages %+v: want both on one connection", msgs)
	}
}

// FuzzChunkBody: any body is sent with BDAT as the bytes a relay stores
// when the DATA path sends it (the dotWriter's stream, read by RFC 5321
// §4.5.2: lines end at CRLF, a leading dot is removed, "." ends the data).
func FuzzChunkBody(f *testing.F) {
	for _, s := range []string{"", ".", ".\r\n", "a\r\r\n.\r\n", "a\n.\n", "x\r", "\r\n\r", "a\rb"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := chunkBody(nil, body), storedFromData(t, dotWriterBytes(t, body)); !bytes.Equal(got, want) {
			t.Errorf("body %q\nchunk  %q\nstored %q", body, got, want)
		}
	})
}

// storedFromData is what a relay stores of a DATA section sent as wire.
func storedFromData(t *testing.T, wire []byte) []byte {
	var out []byte
	for {
		i := bytes.Index(wire, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("no end of data in %q", wire)
		}
		line := wire[:i+2]
		wire = wire[i+2:]
		if string(line) == ".\r\n" {
			if len(wire) > 0 {
				t.Fatalf("%q after the end of data", wire)
			}
			return out
		}
		out = append(out, bytes.TrimPrefix(line, []byte("."))...)
	}
}

// TestDebugChunkedBody: with Debug on, a message sent with BDAT is logged
// as its BDAT line and its size, none of its text, and no final dot.
func TestDebugChunkedBody(t *testing.T) {
	log, captured := debugLogger()
	srv := smtptest.NewServer(t, smtptest.Options{Chunking: true})
	tr := newTransport(t, srv, func(o *Options) { o.Debug, o.Logger = true, log })
	mustSend(t, tr, message("a@example.org", "b@example.net"))
	n := len(srv.Messages()[0].Body)
	conv := captured.conversation(t)
	i := slices.Index(conv, fmt.Sprintf("C: BDAT %d LAST", n))
	if i < 0 || i+1 >= len(conv) || conv[i+1] != fmt.Sprintf("C: <message body: %d bytes>", n) {
		t.Errorf("logged conversation without the BDAT line and the body's size:\n%s", strings.Join(conv, "\n"))
	}
	if slices.Contains(conv, "C: .") || strings.Contains(captured.String(), "leading dot") {
		t.Errorf("the body or a final dot was logged:\n%s", captured.String())
	}
}
