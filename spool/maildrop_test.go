package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// Files are independent: one the queue cannot take (too big for the room
// left in it) stays claimed while the files after it, from the same user
// or others, go in. It is tried again later, not at every pass; once it
// has failed maildropMaxFailures times over at least an hour it is set
// aside with a log line. A claimed file left by a failed import is
// imported by a later one, into a queue with room.
func TestImportFilesAreIndependent(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{MaxSize: 1 << 20})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	big := []byte(strings.Repeat("0123456789abcdef\r\n", 2<<20/18))
	name, err := WriteMaildrop(dir, env, big)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"first\r\n", "second\r\n"} {
		if _, err := WriteMaildrop(dir, env, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	log, logged := captureLog(t)
	md := &Maildrop{Dir: dir, Queue: q, Log: log, now: func() time.Time { return now }}
	if n, err := md.Import(context.Background()); n != 2 || err != nil {
		t.Fatalf("Import = %d, %v; want the 2 files after the one too big, nil", n, err)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{name + ".work"}) {
		t.Fatalf("maildrop holds %q, want the claimed file", got)
	}
	// Passes before its retry time leave it alone; one a few minutes later
	// tries again. Ten failures within a few minutes set nothing aside.
	if n, err := md.Import(context.Background()); n != 0 || err != nil || md.waiting[name].failures != 1 {
		t.Fatalf("second Import at once = %d, %v, %+v; want the file left to its retry time", n, err, md.waiting[name])
	}
	for i := 2; i <= maildropMaxFailures; i++ {
		now = now.Add(maildropRetryMax)
		md.Import(context.Background())
		if got := md.waiting[name].failures; got != i {
			t.Fatalf("after %d passes past the retry time: %d failures recorded", i, got)
		}
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{name + ".work"}) {
		t.Fatalf("maildrop holds %q after 10 failures in under an hour, want the claimed file", got)
	}
	// Failing for an hour, it is set aside.
	for range 20 {
		now = now.Add(maildropRetryMax)
		md.Import(context.Background())
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{name + ".bad"}) {
		t.Fatalf("maildrop holds %q after an hour of failures, want %s.bad", got, name)
	}
	if text := logged(); strings.Count(text, "maildrop: file set aside, not imported") != 1 || !strings.Contains(text, "could not be queued") {
		t.Errorf("no log line for the file set aside:\n%s", text)
	}

	// A claimed file (failed or crashed import) goes in next time.
	os.Rename(filepath.Join(dir, name+".bad"), filepath.Join(dir, name+".work"))
	q2 := openQueue(t, queue.Options{})
	if n, err := (&Maildrop{Dir: dir, Queue: q2, Log: testLogger(t)}).Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want 1, nil", n, err)
	}
}

// A leftover the import cannot remove (a stale tmp.* directory with files
// in it) is logged once per interval, not at every pass.
func TestImportLogsRepeatedErrorOnce(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	stale := filepath.Join(dir, "tmp.0000-dir")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "f"), nil, 0o644)
	twoHoursAgo := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, twoHoursAgo, twoHoursAgo)
	log, logged := captureLog(t)
	md := &Maildrop{Dir: dir, Queue: q, Log: log}
	for range 5 {
		if _, err := md.Import(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logged(), "cannot remove stale temporary file"); n != 1 {
		t.Errorf("logged %d times in 5 passes, want once:\n%s", n, logged())
	}
}

// TestMaildropKeepsMinFree: below min_free on the queue's file system,
// sendmail's side refuses to write to the maildrop (ErrNoRoom), and the
// daemon's import leaves what is there, unclaimed, until there is room.
func TestMaildropKeepsMinFree(t *testing.T) {
	dir := maildropDir(t)
	free, err := queue.FreeSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	queuePath := filepath.Join(t.TempDir(), "queue.db")
	if err := MaildropRoom(queuePath, dir, free+1<<30); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("MaildropRoom with min_free beyond the free space: %v, want ErrNoRoom", err)
	}
	if err := MaildropRoom(queuePath, dir, 1<<20); err != nil {
		t.Fatalf("MaildropRoom with room: %v", err)
	}
	name, err := WriteMaildrop(dir, queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, queue.Options{MinFree: free + 1<<30})
	n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background())
	if n != 0 || !errors.Is(err, queue.ErrFull) {
		t.Fatalf("Import below min_free = %d, %v; want 0, ErrFull", n, err)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{name}) {
		t.Fatalf("maildrop holds %q, want the file as sendmail left it", got)
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

// A file's owner can append to it after the importer has checked its size
// (the file is theirs, and they may hold it open). The read stops just past
// max_message_size whatever fstat said, so a file grown to gigabytes after
// the check cannot exhaust the daemon's memory; the file is set aside.
func TestImportBoundsReadOfGrowingFile(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.com"}}
	name, err := WriteMaildrop(dir, env, []byte("small\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	const maxSize = 1024
	grown := int64(0)
	md := &Maildrop{Dir: dir, Queue: q, MaxSize: maxSize, Log: testLogger(t)}
	md.afterStat = func(f *os.File) {
		// What the owner does through the descriptor it kept: append a
		// valid body far larger than the limit.
		w, err := os.OpenFile(filepath.Join(dir, name+maildropWork), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close()
		chunk := bytes.Repeat([]byte("grown after the check\r\n"), 1<<16)
		for grown < 3*maildropEnvelopeRoom {
			n, err := w.Write(chunk)
			grown += int64(n)
			if err != nil {
				t.Error(err)
				return
			}
		}
	}
	if n, err := md.Import(context.Background()); n != 0 || err != nil {
		t.Fatalf("Import = %d, %v; want 0, nil", n, err)
	}
	if grown == 0 {
		t.Fatal("the file was not grown")
	}
	if msgs, bodies := queued(t, q); len(msgs) != 0 {
		t.Fatalf("queued a message of %d bytes from a file grown past max_message_size %d", len(bodies[0]), maxSize)
	}
	if got := listDir(t, dir); !reflect.DeepEqual(got, []string{name + ".bad"}) {
		t.Fatalf("maildrop holds %q, want %s.bad", got, name)
	}
}

// A maildrop file gets the policy its owner's submission on the socket
// would: more recipients than max_recipients sets it aside (sendmail has
// already reported it sent; it is kept for a human); over the owner's
// messages_per_hour it waits, claimed, and is not counted as failing; and
// other users' files are not held up behind it.
func TestImportAppliesIntakePolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to give a maildrop file to another uid (the suite runs as root)")
	}
	const other = 65534 // nobody
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	srv := NewServer(Options{Queue: q, MaxRecipients: 5, Limits: Limits{Default: Limit{MessagesPerHour: 2}}, Logger: testLogger(t)})
	write := func(rcpts int, body string) string {
		env := queue.Envelope{From: "a@example.org"}
		for i := range rcpts {
			env.Recipients = append(env.Recipients, fmt.Sprintf("r%d@example.com", i))
		}
		name, err := WriteMaildrop(dir, env, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	many := write(6, "six recipients\r\n")
	write(1, "first\r\n")
	write(1, "second\r\n")
	third := write(1, "third: over the hourly limit\r\n")
	others := write(1, "another user's\r\n")
	if err := os.Chown(filepath.Join(dir, others), other, other); err != nil {
		t.Fatal(err)
	}

	md := &Maildrop{Dir: dir, Queue: q, Intake: srv, Log: testLogger(t)}
	if n, err := md.Import(context.Background()); n != 3 || err != nil {
		t.Fatalf("Import = %d, %v; want 3, nil", n, err)
	}
	msgs, bodies := queued(t, q)
	sort.Strings(bodies)
	// Each got an empty line before it: a message without a header.
	if want := []string{"\r\nanother user's\r\n", "\r\nfirst\r\n", "\r\nsecond\r\n"}; !reflect.DeepEqual(bodies, want) {
		t.Errorf("queued %q, want %q", bodies, want)
	}
	for _, m := range msgs {
		if len(m.Recipients) > 5 {
			t.Errorf("queued a message with %d recipients, over max_recipients 5", len(m.Recipients))
		}
	}
	if got, want := listDir(t, dir), []string{many + ".bad", third + ".work"}; !reflect.DeepEqual(got, want) {
		t.Errorf("maildrop holds %q, want %q", got, want)
	}
	if w := md.waiting[third]; w == nil || w.failures != 0 {
		t.Errorf("retry state of the file over the limit: %+v, want a wait that is no failure", w)
	}
}
