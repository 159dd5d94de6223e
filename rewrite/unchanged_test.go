package rewrite

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestKeepsHeaderAgreesWithRewrite: on random headers (From fields in
// every form, local and remote, folded, listed, quoted, commented, in
// another case; defaults present or not; lines that end the header early)
// under random rules, whenever the quick check says nothing changes, the
// full rewrite returns the message as it is. The quick check must also
// take a good share of the messages the full rewrite keeps (about half of
// those generated here have a From that net/mail cannot read at all, left
// as it is, which the quick check leaves to the full rewrite).
func TestKeepsHeaderAgreesWithRewrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 2026))
	kept, quick := 0, 0
	for i := range 50000 {
		o := randomOptions(rng)
		r, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		msg := randomMessage(rng)
		full := r.rewriteHeader(bytes.Clone(msg))
		same := bytes.Equal(full, msg)
		if same {
			kept++
		}
		if r.keepsHeader(msg) {
			quick++
			if !same {
				t.Fatalf("case %d: the quick check keeps the header, the rewrite changes it\nrules %+v\nmessage %q\nrewritten %q", i, o, msg, full)
			}
		}
	}
	t.Logf("%d of %d messages kept, %d of them found by the quick check", kept, 50000, quick)
	if quick < kept/3 {
		t.Errorf("the quick check found %d of the %d messages kept; want a third at least", quick, kept)
	}
}

// TestKeepsHeaderOnCommonMail: the mail intake sees most (bench/load's,
// a qualified cron mail, a mailing list's) takes the quick way, and mail
// with something to rewrite does not.
func TestKeepsHeaderOnCommonMail(t *testing.T) {
	r := mustNew(t, Options{Domain: "web1.example.net", LocalDomains: []string{"web1", "localhost"}})
	for _, h := range []string{
		"From: Load <load@bench.test>\r\nTo: <sink@bench.test>\r\nSubject: bench 1\r\nMessage-ID: <a.1@bench.test>\r\nDate: Mon, 7 Dec 2026 11:00:00 +0000\r\n",
		"From: \"Cron Daemon\" <root@web1.example.net>\r\nSubject: x\r\n",
		"from: app@example.org\r\n",
		"Subject: no From at all\r\n",
	} {
		if msg := []byte(h + "\r\nbody\r\n"); !r.keepsHeader(msg) {
			t.Errorf("not kept the quick way: %q", h)
		}
	}
	for _, h := range []string{
		"From: root\r\n",
		"From: Cron <root@web1>\r\n",
		"From: x@localhost\r\n",
	} {
		if r.keepsHeader([]byte(h + "\r\n")) {
			t.Errorf("kept, but the From is local: %q", h)
		}
	}
	withDefaults := mustNew(t, Options{Domain: "web1.example.net", Defaults: []Field{{"Reply-To", "ops@example.net"}}})
	if withDefaults.keepsHeader([]byte("From: a@example.org\r\n\r\n")) {
		t.Errorf("kept without the Reply-To the defaults add")
	}
	if !withDefaults.keepsHeader([]byte("From: a@example.org\r\nreply-to: b@example.org\r\n\r\n")) {
		t.Errorf("not kept with every default present")
	}
}

// FuzzKeepsHeader: as TestKeepsHeaderAgreesWithRewrite, on any bytes,
// under rules drawn from the seed.
func FuzzKeepsHeader(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		f.Add(uint64(i), randomMessage(rng))
	}
	f.Add(uint64(0), []byte("From: Load <load@bench.test>\r\nSubject: x\r\n\r\nbody\r\n"))
	f.Fuzz(func(t *testing.T, seed uint64, msg []byte) {
		o := randomOptions(rand.New(rand.NewPCG(seed, 0)))
		r, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if r.keepsHeader(msg) && !bytes.Equal(r.rewriteHeader(bytes.Clone(msg)), msg) {
			t.Fatalf("the quick check keeps the header, the rewrite changes it\nrules %+v\nmessage %q", o, msg)
		}
	})
}

func randomOptions(rng *rand.Rand) Options {
	o := Options{LocalDomains: pick(rng, [][]string{nil, {"vm"}, {"vm", "web1.example.net"}})}
	o.Domain = pick(rng, []string{"", "example.net", "web1.example.net"})
	o.Masquerade = pick(rng, [][]string{nil, {"example.com"}, {"Example.ORG"}})
	o.FromHeader = pick(rng, []string{"", "", "noreply@example.com", "a@example.org"})
	o.FromHeaderWhen = pick(rng, []When{"", Local, Always})
	o.FromToReplyTo = rng.IntN(2) == 0
	for _, d := range []Field{{"From", "App <app@example.net>"}, {"Reply-To", "help@example.net"}, {"List-Unsubscribe", "<mailto:u@example.net>"}} {
		if rng.IntN(4) == 0 {
			o.Defaults = append(o.Defaults, d)
		}
	}
	return o
}

func randomMessage(rng *rand.Rand) []byte {
	var b bytes.Buffer
	for range rng.IntN(6) {
		b.WriteString(randomField(rng))
	}
	b.WriteString(pick(rng, []string{"\r\n", "\r\n", "not a field\r\n", " continued\r\n", ""}))
	b.WriteString("body line\r\nFrom: in the body <root>\r\n")
	return b.Bytes()
}

func randomField(rng *rand.Rand) string {
	switch rng.IntN(3) {
	case 0:
		return pick(rng, []string{"Subject: hi\r\n", "Subject: a\r\n folded\r\n", "To: <x@y.org>\r\n", "Reply-To: r@x.org\r\n",
			"reply-to: r@x.org\r\n", "List-Unsubscribe: <x>\r\n", "X-Empty:\r\n", "Bad Name: x\r\n"})
	}
	name := pick(rng, []string{"From", "From", "from", "FROM", "From "})
	return name + ":" + pick(rng, []string{" ", "", "\t", "  "}) + randomFromValue(rng) + pick(rng, []string{"\r\n", "\r\n", " \r\n", "\n", ""})
}

func randomFromValue(rng *rand.Rand) string {
	addr := func() string {
		local := pick(rng, []string{"root", "app", "a.b", "a..b", ".a", "o'neil", "\"q r\"", "jörg", "x+tag", ""})
		switch rng.IntN(6) {
		case 0:
			return local
		}
		domain := pick(rng, []string{"vm", "VM", "localhost", "web1.example.net", "db.example.com", "Host.Example.Org", "example.org",
			"example.net", "x.org", "[1.2.3.4]", "host.", "-x-.org", "exa mple.org", ""})
		return local + "@" + domain
	}
	name := pick(rng, []string{"", "", "Load", "Cron Daemon", "\"Cron Daemon\"", "J. Doe", "=?utf-8?q?J=C3=B6rg?=", "Jörg",
		"\"a,b\"", "\"a<b\"", "\"q\\\"x\"", "a@b", "(c)", "\"\"", "x:"})
	one := func() string {
		switch rng.IntN(5) {
		case 0:
			return addr()
		case 1:
			return addr() + pick(rng, []string{" (Cron Daemon)", "(c)", " "})
		case 2:
			return name + pick(rng, []string{" ", "", "  "}) + "<" + addr() + ">"
		case 3:
			return name + " < " + addr() + " >"
		}
		return name + " <" + addr() + ">"
	}
	v := one()
	switch rng.IntN(8) {
	case 0:
		v += ", " + one()
	case 1:
		v = "group: " + one() + ";"
	case 2:
		v = strings.Replace(v, " ", "\r\n ", 1)
	}
	return v
}

func pick[T any](rng *rand.Rand, from []T) T { return from[rng.IntN(len(from))] }

// BenchmarkMessage is intake's header rewrite of a bench/load message
// (guard: allocs/op; nothing to change, so no copy).
func BenchmarkMessage(b *testing.B) {
	r, err := New(Options{Domain: "web1.example.net", LocalDomains: []string{"web1", "localhost", "localhost.localdomain"}})
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte(fmt.Sprintf("From: Load <load@bench.test>\r\nTo: <sink@bench.test>\r\nSubject: bench run 1\r\n"+
		"Message-ID: <run.1@bench.test>\r\nDate: Mon, 07 Dec 2026 11:00:00 +0000\r\nX-Bench-Id: run-1\r\n\r\n%s", bytes.Repeat([]byte("x"), 5000)))
	for b.Loop() {
		if _, out := r.Message("load@bench.test", msg); &out[0] != &msg[0] {
			b.Fatal("rewritten")
		}
	}
}
