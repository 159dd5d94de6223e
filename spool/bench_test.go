package spool

import (
	"bufio"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// BenchmarkIntakeMessage measures one 5 KB message taken in over a warm
// TCP session, queued into a real queue with every commit fsynced: ns/op
// is mostly the disk's; B/op and allocs/op are the intake's, the queue's
// and this client's; writes/op is the server's writes to the client (one
// system call each). Two clients:
//
//   - waiting: as bench/load sends (MAIL, RCPT, DATA, the body, the dot,
//     each reply awaited): four replies, four writes;
//   - pipelined: as Postfix's smtp client sends to a server that offers
//     PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write, then the
//     body and the dot: two writes (replies.go).
//
// Run with:
//
//	go test -run '^$' -bench IntakeMessage -benchmem ./spool
func BenchmarkIntakeMessage(b *testing.B) {
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\r\n"
	body := []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(line, 5120/len(line)) + ".\r\n")
	for _, pipelined := range []bool{false, true} {
		name := "waiting"
		if pipelined {
			name = "pipelined"
		}
		b.Run(name, func(b *testing.B) { benchmarkIntake(b, body, pipelined) })
	}
}

func benchmarkIntake(b *testing.B, body []byte, pipelined bool) {
	s, wl := startLoggedServer(b, Options{Logger: slog.New(slog.DiscardHandler)})
	wl.countOnly = true
	nc := dial(b, s, "tcp")
	r := bufio.NewReader(nc)
	expect := func(code string) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if !strings.HasPrefix(l, code) {
				b.Fatalf("got %q, want %s", l, code)
			}
			if l[3] == ' ' {
				return
			}
		}
	}
	send := func(p []byte, codes ...string) {
		if _, err := nc.Write(p); err != nil {
			b.Fatal(err)
		}
		for _, code := range codes {
			expect(code)
		}
	}
	expect("220")
	send([]byte("EHLO bench.example\r\n"), "250")
	mail, rcpt, data := []byte("MAIL FROM:<a@example.org>\r\n"), []byte("RCPT TO:<b@example.net>\r\n"), []byte("DATA\r\n")
	group := append(append(append([]byte(nil), mail...), rcpt...), data...)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	before := wl.count()
	for range b.N {
		if pipelined {
			send(group, "250", "250", "354")
		} else {
			send(mail, "250")
			send(rcpt, "250")
			send(data, "354")
		}
		send(body, "250")
	}
	b.StopTimer()
	b.ReportMetric(float64(wl.count()-before)/float64(b.N), "writes/op")
	io.WriteString(nc, "QUIT\r\n")
}

// BenchmarkReadData measures the reading of a 5 KB DATA section as it
// arrives from the network, into the session's normalizer: the decoding
// (wire.readData) and the normalizer's checks and copy, without the
// network. Run with:
//
//	go test -run '^$' -bench ReadData -benchmem ./spool
func BenchmarkReadData(b *testing.B) {
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\r\n"
	in := []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(line, 5120/len(line)) + ".\r\n")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var w wire // as a session's, kept from message to message
	for range b.N {
		w.reply([]byte("354 go ahead\r\n"))
		sent := false
		next := func(p []byte) (int, error) {
			if sent {
				return 0, io.EOF
			}
			sent = true
			return copy(p, in), nil
		}
		n := &normalizer{}
		if err := w.readData(crlfWriter{n}, 1000, next); err != nil {
			b.Fatal(err)
		}
		n.release()
	}
}
