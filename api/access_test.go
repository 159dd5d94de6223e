package api

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fileEnv is an API whose socket allows file access under one root, with
// a file inside, a symlink out of it and a file outside.
func fileEnv(t *testing.T, access Access) (*env, string, string) {
	t.Helper()
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "secret.txt")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "report.txt"), []byte("quarterly report\n"), 0o644)
	os.WriteFile(outside, []byte("do not leak\n"), 0o644)
	os.Symlink(outside, filepath.Join(root, "link.txt"))
	os.Symlink("..", filepath.Join(root, "up"))
	os.WriteFile(filepath.Join(root, "big.bin"), make([]byte, 2048), 0o644)
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{api: Options{SocketAccess: access, FileRoots: []string{root}, MaxAttachmentSize: 1024}})
	return e, root, outside
}

func withPath(p string) Message {
	return Message{From: "app@example.com", To: addressList{"u@example.org"}, Text: ptr("see attached"),
		Attachments: []Attachment{{Filename: "f.txt", Path: p}}}
}

// TestFileAccessAllowedUnderRoot: a file under a root is attached, and
// its bytes are in the queued message.
func TestFileAccessAllowedUnderRoot(t *testing.T) {
	e, root, _ := fileEnv(t, Access{Files: true})
	a := e.postJSON(withPath(filepath.Join(root, "report.txt")), nil)
	if a.status != http.StatusAccepted {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	if !strings.Contains(string(e.stored(a.str("id"))), "cXVhcnRlcmx5IHJlcG9ydAo=") { // base64 of the file
		t.Error("file content not in the message")
	}
}

// TestFileAccessRefusals: every way out of the roots is refused with 400
// naming the attachment, and the file's content never reaches the queue.
func TestFileAccessRefusals(t *testing.T) {
	e, root, outside := fileEnv(t, Access{Files: true})
	for _, c := range []struct {
		name, path, code, field string
		status                  int
	}{
		{"symlink out of the root", filepath.Join(root, "link.txt"), "file_refused", "attachments[0].path", 400},
		{"symlinked directory out", filepath.Join(root, "up", "secret.txt"), "file_refused", "attachments[0].path", 400},
		{"dot-dot", root + "/../secret.txt", "file_refused", "attachments[0].path", 400},
		{"outside every root", outside, "file_refused", "attachments[0].path", 400},
		{"relative path", "report.txt", "file_refused", "attachments[0].path", 400},
		{"directory", root, "file_refused", "attachments[0].path", 400},
		{"FIFO with no writer (the open must not wait for one)", filepath.Join(root, "fifo"), "file_refused", "attachments[0].path", 400},
		{"missing", filepath.Join(root, "nope"), "file_refused", "attachments[0].path", 400},
		{"too large", filepath.Join(root, "big.bin"), "attachment_too_large", "attachments[0]", 413},
	} {
		a := e.postJSON(withPath(c.path), nil)
		if a.status != c.status || a.errField("code") != c.code || a.errField("field") != c.field {
			t.Errorf("%s: %d %s", c.name, a.status, a.raw)
		}
		if strings.Contains(a.raw, "do not leak") {
			t.Errorf("%s: content leaked in the answer", c.name)
		}
	}
	if n, _ := e.q.Count(); n.Messages != 0 {
		t.Errorf("%d messages queued", n.Messages)
	}
}

// TestFileAccessDisabled: with file access off (the TCP default), a path
// is refused even under a root.
func TestFileAccessDisabled(t *testing.T) {
	e, root, _ := fileEnv(t, Access{})
	a := e.postJSON(withPath(filepath.Join(root, "report.txt")), nil)
	if a.status != 400 || a.errField("code") != "file_access_disabled" || a.errField("field") != "attachments[0].path" {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

func withHref(u string) Message {
	return Message{From: "app@example.com", To: addressList{"u@example.org"}, Text: ptr("see attached"),
		Attachments: []Attachment{{Filename: "f.txt", Href: u}}}
}

// TestURLAccess: a URL on an allowed address is fetched once at
// submission and stored; every refusal path answers 400 (413 over the
// size) naming the attachment.
func TestURLAccess(t *testing.T) {
	var fetches atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fetches.Add(1); w.Write([]byte("fetched body")) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 4096)) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/404", http.NotFound)
	// other is a server on a port fetches may not reach: loopback is
	// refused unless allowed, as a private address is.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("internal")) }))
	defer other.Close()
	for _, to := range []string{other.URL + "/", "http://10.1.2.3/", "http://[::1]:1/", "http://169.254.169.254/latest/meta-data/", "http://localhost:" + strings.Split(other.URL, ":")[2] + "/", "file:///etc/passwd", "gopher://x/"} {
		mux.Handle("/redirect-"+strings.Map(func(r rune) rune {
			if r == '/' || r == ':' || r == '[' || r == ']' {
				return '_'
			}
			return r
		}, to), http.RedirectHandler(to, http.StatusFound))
	}
	origin := httptest.NewServer(mux)
	defer origin.Close()
	e := newEnv(t, envOptions{api: Options{SocketAccess: Access{URLs: true}, MaxAttachmentSize: 1024,
		URLTimeout: 300 * time.Millisecond, DialAllowed: allowPorts(origin.URL)}})

	a := e.postJSON(withHref(origin.URL+"/ok"), nil)
	if a.status != http.StatusAccepted || !strings.Contains(string(e.stored(a.str("id"))), "ZmV0Y2hlZCBib2R5") {
		t.Fatalf("allowed fetch: %d %s", a.status, a.raw)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("fetched %d times", n)
	}
	redirect := func(to string) string {
		return origin.URL + "/redirect-" + strings.NewReplacer("/", "_", ":", "_", "[", "_", "]", "_").Replace(to)
	}
	for _, c := range []struct{ name, href, code string }{
		{"redirect to 127.0.0.1", redirect(other.URL + "/"), "url_refused"},
		{"redirect to 10.x", redirect("http://10.1.2.3/"), "url_refused"},
		{"redirect to ::1", redirect("http://[::1]:1/"), "url_refused"},
		{"redirect to link-local metadata", redirect("http://169.254.169.254/latest/meta-data/"), "url_refused"},
		{"redirect to a name resolving to loopback", redirect("http://localhost:" + strings.Split(other.URL, ":")[2] + "/"), "url_refused"},
		{"redirect to file:", redirect("file:///etc/passwd"), "url_refused"},
		{"redirect to gopher:", redirect("gopher://x/"), "url_refused"},
		{"direct loopback", other.URL + "/", "url_refused"},
		{"name resolving to loopback", "http://localhost:" + strings.Split(other.URL, ":")[2] + "/", "url_refused"},
		{"direct 10.x", "http://10.0.0.1/", "url_refused"},
		{"direct ::1", "http://[::1]:80/", "url_refused"},
		{"non-http scheme", "ftp://example.com/x", "url_refused"},
		{"file scheme", "file:///etc/passwd", "url_refused"},
		{"not found", origin.URL + "/404", "url_refused"},
		{"too slow", origin.URL + "/slow", "url_refused"},
		{"too large", origin.URL + "/big", "attachment_too_large"},
	} {
		a := e.postJSON(withHref(c.href), nil)
		if a.errField("code") != c.code || !strings.HasPrefix(a.errField("field"), "attachments[0]") || a.status/100 != 4 {
			t.Errorf("%s: %d %s", c.name, a.status, a.raw)
		}
		if strings.Contains(a.raw, "internal") {
			t.Errorf("%s: internal content leaked", c.name)
		}
	}
	if n, _ := e.q.Count(); n.Messages != 1 {
		t.Errorf("%d messages queued, want 1", n.Messages)
	}
}

// TestURLAccessDisabled: href is refused when URL access is off (the
// default).
func TestURLAccessDisabled(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.postJSON(withHref("http://example.com/x"), nil)
	if a.status != 400 || a.errField("code") != "url_access_disabled" || a.errField("field") != "attachments[0].href" {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

// TestPublicAddr is the dial-time filter's table.
func TestPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"93.184.216.34": true, "2606:2800:220:1::1": true,
		"127.0.0.1": false, "10.0.0.1": false, "172.16.0.1": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "0.0.0.0": false, "::1": false, "fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false,
		"224.0.0.1": false,
	} {
		if got := publicAddr(mustAddr(t, s)); got != want {
			t.Errorf("publicAddr(%s) = %v", s, got)
		}
	}
}
