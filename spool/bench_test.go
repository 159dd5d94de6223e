package spool

import (
	"bufio"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// BenchmarkIntakeMessage measures one 5 KB message taken in over a warm
// TCP session, as bench/load sends it (MAIL, RCPT, DATA, the body, the
// dot, each reply awaited), queued into a real queue with every commit
// fsynced: ns/op is mostly the disk's; B/op and allocs/op are the
// intake's, the queue's and this client's. Run with:
//
//	go test -run '^$' -bench IntakeMessage -benchmem ./spool
func BenchmarkIntakeMessage(b *testing.B) {
	s := startServer(b, Options{Logger: slog.New(slog.DiscardHandler)})
	nc := dial(b, s, "tcp")
	r := bufio.NewReader(nc)
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\r\n"
	body := []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(line, 5120/len(line)) + ".\r\n")
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
	send := func(p []byte, code string) {
		if _, err := nc.Write(p); err != nil {
			b.Fatal(err)
		}
		expect(code)
	}
	expect("220")
	send([]byte("EHLO bench.example\r\n"), "250")
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		send([]byte("MAIL FROM:<a@example.org>\r\n"), "250")
		send([]byte("RCPT TO:<b@example.net>\r\n"), "250")
		send([]byte("DATA\r\n"), "354")
		send(body, "250")
	}
	b.StopTimer()
	io.WriteString(nc, "QUIT\r\n")
}
