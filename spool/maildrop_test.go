package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

func maildropDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "maildrop")
	if err := EnsureMaildrop(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestEnsureMaildrop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "maildrop")
	for range 2 { // creating, then fixing up an existing directory
		if err := EnsureMaildrop(dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if want := os.ModeDir | os.ModeSticky | 0o733; fi.Mode() != want {
			t.Fatalf("mode %v, want %v", fi.Mode(), want)
		}
		os.Chmod(dir, 0o755)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if err := EnsureMaildrop(file); err == nil {
		t.Error("EnsureMaildrop accepted a plain file")
	}
}

func TestMaildropRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		env  queue.Envelope
		body string
	}{
		{"plain", queue.Envelope{From: "cron@example.org", Recipients: []string{"a@example.com", "b@example.com"}}, "Subject: x\r\n\r\nbody\r\n"},
		{"null sender", queue.Envelope{From: "", Recipients: []string{"a@example.com"}}, "Subject: null sender\r\n\r\nx\r\n"},
		{"utf8 and 8bit", queue.Envelope{From: "jörg@exämple.de", Recipients: []string{"a@example.com"}, UTF8: true}, "Subject: caf\xc3\xa9\r\n\r\n"},
		{"empty body", queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := maildropDir(t)
			q := openQueue(t, queue.Options{})
			name, err := WriteMaildrop(dir, tt.env, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("maildrop file mode %v, want 0644 (the daemon must read it)", fi.Mode())
			}
			n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background())
			if err != nil || n != 1 {
				t.Fatalf("Import = %d, %v; want 1, nil", n, err)
			}
			msgs, bodies := queued(t, q)
			if len(msgs) != 1 {
				t.Fatalf("%d messages queued, want 1", len(msgs))
			}
			m := msgs[0]
			if bodies[0] != tt.body {
				t.Errorf("body %q, want %q", bodies[0], tt.body)
			}
			if m.From != tt.env.From || !reflect.DeepEqual(addresses(m.Recipients), tt.env.Recipients) {
				t.Errorf("envelope %q → %q", m.From, addresses(m.Recipients))
			}
			if m.UTF8 != tt.env.UTF8 || m.EightBit != !isASCII(tt.body) {
				t.Errorf("utf8 %v 8bit %v", m.UTF8, m.EightBit)
			}
			if want := (queue.Submitter{UID: os.Getuid(), Via: "maildrop", User: userName(os.Getuid())}); m.Submitter != want {
				t.Errorf("submitter %+v, want %+v", m.Submitter, want)
			}
			if left := listDir(t, dir); len(left) != 0 {
				t.Errorf("files left after import: %q", left)
			}
		})
	}
}

func TestImportOrderAndSkips(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	for _, body := range []string{"first\r\n", "second\r\n", "third\r\n"} {
		if _, err := WriteMaildrop(dir, env, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// sendmail still writing: left alone.
	write("tmp.0000-half", "relayq-maildrop 1\nfrom <a@example.org>\n")
	// sendmail died writing two hours ago: removed.
	old := write("tmp.0000-old", "relayq-maildrop 1\n")
	twoHoursAgo := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, twoHoursAgo, twoHoursAgo)
	// Not maildrop files: set aside, never deleted.
	write("garbage", "hello\n")
	write("nul", "relayq-maildrop 1\nfrom <a@example.org>\nrcpt <b@example.com>\n\na\x00b\r\n")
	write("injection", "relayq-maildrop 1\nfrom <a@example.org>\nrcpt <b@example.com> SIZE=1\n\nx\r\n")
	write("norcpt", "relayq-maildrop 1\nfrom <a@example.org>\n\nx\r\n")
	// A link to a file the submitter may not read must not be mailed.
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("relayq-maildrop 1\nfrom <a@example.org>\nrcpt <b@example.com>\n\nsecret\r\n"), 0o600)
	if err := os.Symlink(secret, filepath.Join(dir, "symlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(secret, filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}

	n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("Import = %d, %v; want 3, nil", n, err)
	}
	_, bodies := queued(t, q) // each without a header: the Received added is followed by an empty line
	if want := []string{"\r\nfirst\r\n", "\r\nsecond\r\n", "\r\nthird\r\n"}; !reflect.DeepEqual(bodies, want) {
		t.Errorf("queued %q, want %q in order", bodies, want)
	}
	want := []string{"garbage.bad", "hardlink.bad", "injection.bad", "norcpt.bad", "nul.bad", "symlink.bad", "tmp.0000-half"}
	if got := listDir(t, dir); !reflect.DeepEqual(got, want) {
		t.Errorf("left in the maildrop %q, want %q", got, want)
	}
	// A second pass changes nothing.
	if n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background()); n != 0 || err != nil {
		t.Errorf("second Import = %d, %v", n, err)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, want) {
		t.Errorf("after a second pass %q, want %q", got, want)
	}
}

// When the queue cannot take a file, it stays for the next import.
func TestImportQueueFull(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{MaxSize: 1 << 20})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	big := []byte(strings.Repeat("0123456789abcdef\r\n", 2<<20/18))
	name, err := WriteMaildrop(dir, env, big)
	if err != nil {
		t.Fatal(err)
	}
	n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background())
	if n != 0 || !errors.Is(err, queue.ErrFull) {
		t.Fatalf("Import = %d, %v; want 0, ErrFull", n, err)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{name + ".work"}) {
		t.Fatalf("maildrop holds %q, want the claimed file", got)
	}
	// A claimed file left by a failed (or crashed) import is imported by the
	// next one, into a queue with room.
	q2 := openQueue(t, queue.Options{})
	if n, err := (&Maildrop{Dir: dir, Queue: q2, Log: testLogger(t)}).Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want 1, nil", n, err)
	}
}

func TestWriteMaildropRefuses(t *testing.T) {
	dir := maildropDir(t)
	for _, env := range []queue.Envelope{
		{From: "a@example.org\nrcpt <evil@example.net>", Recipients: []string{"b@example.com"}},
		{From: "a@example.org", Recipients: []string{"b@example.com>\nrcpt <evil@example.net"}},
		{From: "a@example.org"},
	} {
		if _, err := WriteMaildrop(dir, env, []byte("x\r\n")); err == nil {
			t.Errorf("WriteMaildrop(%q → %q) succeeded", env.From, env.Recipients)
		}
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("files left behind: %q", left)
	}
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	if _, err := WriteMaildrop(filepath.Join(dir, "missing"), env, []byte("x\r\n")); err == nil {
		t.Error("WriteMaildrop into a missing directory succeeded")
	}
}

func TestMaildropWatch(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Watch(ctx, 10*time.Millisecond)
	}()
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	if _, err := WriteMaildrop(dir, env, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watcher to import the file", func() bool {
		c, err := q.Count()
		return err == nil && c.Messages == 1
	})
	cancel()
	<-done
}

// A maildrop file far beyond max_message_size is set aside unread: it is
// kept for the operator, and the daemon never loads it into memory.
func TestImportSetsAsideOversizedFile(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	small, err := WriteMaildrop(dir, env, []byte("small\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	big, err := WriteMaildrop(dir, env, bytes.Repeat([]byte("x\r\n"), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	md := &Maildrop{Dir: dir, Queue: q, MaxSize: 1024, Log: testLogger(t)}
	if n, err := md.Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want 1, nil", n, err)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{big + ".bad"}) {
		t.Fatalf("maildrop holds %q, want only %s.bad (and %s imported)", got, big, small)
	}
}
