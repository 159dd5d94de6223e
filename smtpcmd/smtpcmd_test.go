package smtpcmd

import (
	"bufio"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lineServer answers a real go-smtp client over a pipe with ehlo and 250s
// and returns each command line it read, as the wire had it.
func lineServer(t *testing.T, ehlo string) (*smtp.Client, <-chan string) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		r := bufio.NewReader(server)
		server.Write([]byte("220 test\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "EHLO ") {
				server.Write([]byte(ehlo))
				continue
			}
			lines <- line
			server.Write([]byte("250 ok\r\n"))
		}
	}()
	c := smtp.NewClient(client)
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	return c, lines
}

// The lines a Formatter gives are the bytes go-smtp's own client writes to
// a server with the same extensions, for the options that change them.
func TestLinesAreGoSMTPs(t *testing.T) {
	const ehlo = "250-test\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n250-SMTPUTF8\r\n250-DSN\r\n250 PIPELINING\r\n"
	real, wire := lineServer(t, ehlo)
	for _, fromEHLO := range []struct {
		name  string
		reply []byte
	}{{"the server's reply", []byte(ehlo)}, {"EHLOReply", EHLOReply(real)}} {
		f, err := New("client.example", fromEHLO.reply)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			from string
			mail *smtp.MailOptions
			to   string
			rcpt *smtp.RcptOptions
		}{
			{"a@example.org", nil, "b@example.org", nil},
			{"", &smtp.MailOptions{Size: 5000, Body: smtp.Body8BitMIME}, "b@example.org", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}}},
			{"ü@bücher.example", &smtp.MailOptions{UTF8: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "x+2By"}, "ö@bücher.example", &smtp.RcptOptions{OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "o@example.org"}},
		}
		for _, c := range cases {
			got, err := f.Mail(c.from, c.mail)
			if err != nil {
				t.Fatalf("%s: Mail(%q): %v", fromEHLO.name, c.from, err)
			}
			if err := real.Mail(c.from, c.mail); err != nil {
				t.Fatal(err)
			}
			if want := <-wire; string(got) != want {
				t.Errorf("%s: MAIL line %q, go-smtp wrote %q", fromEHLO.name, got, want)
			}
			got, err = f.Rcpt(c.to, c.rcpt)
			if err != nil {
				t.Fatalf("%s: Rcpt(%q): %v", fromEHLO.name, c.to, err)
			}
			if err := real.Rcpt(c.to, c.rcpt); err != nil {
				t.Fatal(err)
			}
			if want := <-wire; string(got) != want {
				t.Errorf("%s: RCPT line %q, go-smtp wrote %q", fromEHLO.name, got, want)
			}
			if err := real.Reset(); err != nil {
				t.Fatal(err)
			}
			<-wire // RSET
		}
	}
}

// go-smtp's own checks hold: an option the server did not offer is an
// error, not a line.
func TestRefusesWhatTheServerLacks(t *testing.T) {
	f, err := New("client.example", []byte("250-test\r\n250 PIPELINING\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if line, err := f.Mail("ü@bücher.example", &smtp.MailOptions{UTF8: true}); err == nil {
		t.Errorf("SMTPUTF8 without the extension gave %q", line)
	}
	if line, err := f.Mail("a@example.org", &smtp.MailOptions{RequireTLS: true}); err == nil {
		t.Errorf("REQUIRETLS without the extension gave %q", line)
	}
}

// A Formatter gives the last RCPT line again for the same recipient and
// options: the lines of a run of RCPTs, repeated, changed and changed
// back, are still go-smtp's own, byte for byte.
func TestRepeatedRcptLinesAreGoSMTPs(t *testing.T) {
	const ehlo = "250-test\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n250-SMTPUTF8\r\n250-DSN\r\n250 PIPELINING\r\n"
	real, wire := lineServer(t, ehlo)
	f, err := New("client.example", []byte(ehlo))
	if err != nil {
		t.Fatal(err)
	}
	notify := []smtp.DSNNotify{smtp.DSNNotifySuccess}
	withNotify := &smtp.RcptOptions{Notify: notify}
	orcpt := func(addr string) *smtp.RcptOptions {
		return &smtp.RcptOptions{OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: addr}
	}
	steps := []struct {
		to   string
		opts *smtp.RcptOptions
		do   func() // after the step
	}{
		{"b@example.org", nil, nil},
		{"b@example.org", nil, nil},
		{"b@example.org", &smtp.RcptOptions{}, nil},
		{"c@example.org", nil, nil},
		{"b@example.org", nil, nil},
		{"b@example.org", withNotify, func() { notify[0] = smtp.DSNNotifyFailure }}, // the caller's slice changes
		{"b@example.org", withNotify, nil},
		{"b@example.org", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed}}, nil},
		{"b@example.org", orcpt("o@example.org"), nil},
		{"b@example.org", orcpt("o@example.org"), nil},
		{"b@example.org", orcpt("p@example.org"), nil},
		{"b@example.org", &smtp.RcptOptions{OriginalRecipientType: smtp.DSNAddressTypeUTF8, OriginalRecipient: "p@example.org"}, nil},
		{"B@example.org", nil, nil},
		{"b@example.org", nil, nil},
	}
	for i, s := range steps {
		got, err := f.Rcpt(s.to, s.opts)
		if err != nil {
			t.Fatalf("step %d: Rcpt(%q): %v", i, s.to, err)
		}
		if err := real.Rcpt(s.to, s.opts); err != nil {
			t.Fatal(err)
		}
		if want := <-wire; string(got) != want {
			t.Errorf("step %d: RCPT line %q, go-smtp wrote %q", i, got, want)
		}
		if s.do != nil {
			s.do()
		}
	}
	// A recipient go-smtp refuses is refused again, not given a line.
	if line, err := f.Rcpt("b@example.org\r\nDATA", nil); err == nil {
		t.Errorf("a recipient with CRLF gave %q", line)
	}
	if line, err := f.Rcpt("b@example.org", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyNever, smtp.DSNNotifySuccess}}); err == nil {
		t.Errorf("NOTIFY=NEVER,SUCCESS gave %q", line)
	}
}

// The same RCPT again costs no allocation (go-smtp's client allocates a
// 2 KiB builder and more for every line).
func TestRepeatedRcptAllocatesNothing(t *testing.T) {
	f, err := New("client.example", []byte("250-test\r\n250-DSN\r\n250 PIPELINING\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	opts := &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}}
	if _, err := f.Rcpt("b@example.org", opts); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { f.Rcpt("b@example.org", opts) }); n != 0 {
		t.Errorf("a repeated RCPT: %v allocations, want 0", n)
	}
}

// sameRcptOptions compares every field of go-smtp's RcptOptions that
// memoizable lets through, and memoizable excludes the rest: a field that
// a new go-smtp adds must be placed in one or the other.
func TestRcptOptionsAllCompared(t *testing.T) {
	known := map[string]bool{
		"Notify": true, "OriginalRecipientType": true, "OriginalRecipient": true, // compared
		"RequireRecipientValidSince": true, "DeliverBy": true, "MTPriority": true, // not memoized
	}
	typ := reflect.TypeFor[smtp.RcptOptions]()
	for i := range typ.NumField() {
		if name := typ.Field(i).Name; !known[name] {
			t.Errorf("smtp.RcptOptions has a field %s that sameRcptOptions neither compares nor memoizable excludes", name)
		}
	}
	if typ.NumField() != len(known) {
		t.Errorf("smtp.RcptOptions has %d fields, the memo knows %d", typ.NumField(), len(known))
	}
	for _, o := range []*smtp.RcptOptions{
		{RequireRecipientValidSince: time.Unix(1, 0)},
		{DeliverBy: &smtp.DeliverByOptions{Time: time.Minute, Mode: smtp.DeliverByNotify}},
		{MTPriority: new(int)},
	} {
		if memoizable(o) {
			t.Errorf("%+v memoizable", o)
		}
	}
}

// HelloLine is the line go-smtp's own client writes first, and go-smtp's
// refusal of a name it would not write.
func TestHelloLineIsGoSMTPs(t *testing.T) {
	for _, name := range []string{"localhost", "client.example", "[127.0.0.1]"} {
		client, server := net.Pipe()
		wire := make(chan string, 1)
		go func() {
			r := bufio.NewReader(server)
			server.Write([]byte("220 test\r\n"))
			line, _ := r.ReadString('\n')
			wire <- line
			server.Write([]byte("250 test\r\n"))
		}()
		if err := smtp.NewClient(client).Hello(name); err != nil {
			t.Fatal(err)
		}
		got, err := HelloLine(name)
		if want := <-wire; err != nil || string(got) != want {
			t.Errorf("HelloLine(%q) = %q, %v; go-smtp wrote %q", name, got, err, want)
		}
		client.Close()
		server.Close()
	}
	if line, err := HelloLine("evil\r\nMAIL FROM:<x>"); err == nil {
		t.Errorf("HelloLine of a name with CRLF: %q, want go-smtp's error", line)
	}
}
