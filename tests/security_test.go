package tests

// Security (issue 5): who may submit and who may run the queue commands,
// secrets in every output, TLS and AUTH policy end to end, the warning for
// a readable secret, and the modes of what relayq creates. The tests that
// change users run the real binary as uid/gid 65534 (nobody) through
// SysProcAttr.Credential, so they need root; CI runs as root.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

const (
	nobody       = 65534 // uid and gid of the unprivileged user
	submitGroup  = 4242  // socket_group of the restricted tests; nobody is not in it
	submitGroupS = "4242"
)

// needRoot skips a test that must run commands as another user.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run relayq as another user (CI runs the suite as root)")
	}
}

// publicBin copies the relayq binary where any user may run it (TestMain
// builds it in a 0700 directory) and returns its path.
func publicBin(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rqbin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(relayqBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "relayq")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// asUser runs bin as uid/gid with the supplementary groups, args and stdin,
// for at most 30 s.
func asUser(bin string, uid, gid int, groups []uint32, stdin []byte, args ...string) cmdResult {
	return asUserEnv(nil, bin, uid, gid, groups, stdin, args...)
}

// asUserEnv is asUser with extra environment variables ("KEY=value").
func asUserEnv(extra []string, bin string, uid, gid int, groups []uint32, stdin []byte, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(testEnv(), extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(uid), Gid: uint32(gid), Groups: groups,
	}}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return cmdResult{code: exitCode(err), stdout: stdout.String(), stderr: stderr.String()}
}

// openStateDir makes a daemon's state directory searchable by other users,
// as systemd's StateDirectoryMode=0711 does (the harness's is 0700).
func openStateDir(t *testing.T, d *daemon) {
	t.Helper()
	if err := os.Chmod(d.dir, 0o711); err != nil {
		t.Fatal(err)
	}
}

// maildropFiles lists the files in the daemon's maildrop (as root).
func maildropFiles(t *testing.T, d *daemon) []string {
	t.Helper()
	entries, err := os.ReadDir(d.maildrop())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestSubmitSocketGroup: `relayq sendmail` run as nobody → relayq, whose
// submission socket is socket_mode 0660 with socket_group 4242.
//   - nobody outside the group: the socket refuses (EACCES), and so does the
//     maildrop fallback (01730, same group): exit 77, nothing queued, nothing
//     in the maildrop, nothing delivered; with the daemon down, the same.
//   - nobody with 4242 as a supplementary group: accepted through the
//     socket; with the daemon down, through the maildrop, delivered once
//     the daemon is back.
func TestSubmitSocketGroup(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "socket_mode", `"0660"`)
		s.set("submission", "socket_group", tomlString(submitGroupS))
	})
	openStateDir(t, d)
	outsider := func(seq int) cmdResult {
		return asUser(bin, nobody, nobody, nil, newMessage(seq, "nobody@example.org", []string{"out@example.net"}, 3),
			"sendmail", "-c", d.config, "out@example.net")
	}
	member := func(seq int) (cmdResult, []byte) {
		msg := newMessage(seq, "nobody@example.org", []string{"in@example.net"}, 3)
		return asUser(bin, nobody, nobody, []uint32{submitGroup}, msg, "sendmail", "-c", d.config, "in@example.net"), msg
	}
	checkRefused := func(r cmdResult) {
		t.Helper()
		if r.code != 77 || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("outsider's sendmail: %v; want exit 77 (EX_NOPERM) saying permission denied", r)
		}
		if files := maildropFiles(t, d); len(files) != 0 {
			t.Errorf("outsider's message reached the maildrop: %q", files)
		}
	}

	checkRefused(outsider(1))
	r, body1 := member(2)
	if r.code != 0 {
		t.Fatalf("group member's sendmail: %v; want exit 0", r)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if !sameMessage(got[0].Body, body1) {
		t.Errorf("relay got %q, want the member's message", got[0].Body)
	}

	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after SIGTERM", code)
	}
	checkRefused(outsider(3))
	r, body2 := member(4)
	if r.code != 0 || len(maildropFiles(t, d)) != 1 {
		t.Fatalf("group member's sendmail with the daemon down: %v, maildrop %q; want exit 0 and one file", r, maildropFiles(t, d))
	}
	d.start()
	got = relay.WaitMessages(t, 2, 15*time.Second)
	if !sameMessage(got[1].Body, body2) {
		t.Errorf("relay got %q, want the member's maildrop message", got[1].Body)
	}
	d.waitQueueEmpty(t, 10*time.Second)
	for _, m := range relay.Messages() {
		if slices.Contains(m.To, "out@example.net") {
			t.Errorf("the outsider's message was delivered: %q", m.Body)
		}
	}
}

// TestSubmitSocketDefaultOpen: `relayq sendmail` run as nobody → relayq
// with the default socket_mode 0666 → smtptest relay: every local user may
// send, as with Postfix's sendmail.
func TestSubmitSocketDefaultOpen(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	openStateDir(t, d)
	msg := newMessage(1, "nobody@example.org", []string{"rcpt@example.net"}, 3)
	if r := asUser(bin, nobody, nobody, nil, msg, "sendmail", "-c", d.config, "rcpt@example.net"); r.code != 0 {
		t.Fatalf("sendmail as nobody: %v", r)
	}
	if got := relay.WaitMessages(t, 1, 15*time.Second); !sameMessage(got[0].Body, msg) {
		t.Errorf("relay got %q", got[0].Body)
	}
	if l := d.logRecords("accepted"); len(l) > 0 && l[0]["uid"] != "" && l[0]["uid"] != "65534" {
		t.Errorf("accepted log names uid %s, want 65534", l[0]["uid"])
	}
}

// TestControlSocketNonAdmin: relayq's queue commands run as nobody → the
// control socket (mode 0600, owned by root, the daemon's user). Listing,
// showing, changing the queue and status all exit 77 and leave the message
// alone. With the socket made world-writable (a misconfiguration), the
// daemon's own check (SO_PEERCRED: root and its own uid only) still refuses.
func TestControlSocketNonAdmin(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	d := startDaemon(t, nil) // relay down: the message stays queued
	openStateDir(t, d)
	from, to := "admin@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))
	commands := [][]string{
		{"queue", "list"},
		{"queue", "list", "--json"},
		{"queue", "show", id},
		{"queue", "delete", id},
		{"queue", "hold", id},
		{"queue", "retry", "--all"},
		{"dead", "list"},
		{"status"},
	}
	try := func(how string) {
		t.Helper()
		for _, args := range commands {
			r := asUser(bin, nobody, nobody, nil, nil, append(args, "-c", d.config)...)
			if r.code != 77 || !strings.Contains(r.stderr, "permission denied") {
				t.Errorf("%s: relayq %s as nobody: %v; want exit 77, permission denied", how, strings.Join(args, " "), r)
			}
			if strings.Contains(r.stdout, id) || strings.Contains(r.stderr, from) {
				t.Errorf("%s: relayq %s as nobody showed the queue: %v", how, strings.Join(args, " "), r)
			}
		}
	}
	try("socket 0600")
	if err := os.Chmod(d.controlSocket(), 0o666); err != nil {
		t.Fatal(err)
	}
	try("socket 0666")
	l := d.queueList(t)
	if len(l) != 1 || l[0].ID != id || l[0].Recipients[0].Status == "held" {
		t.Errorf("queue after the refused commands: %+v; want %s untouched", l, id)
	}
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 that asks for Basic
// credentials user:pass and tunnels to wherever the client asks.
func connectProxy(t *testing.T, user, pass string) (addr string, tunnels *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tunnels = new(atomic.Int32)
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				if req.Header.Get("Proxy-Authorization") != want {
					io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
					return
				}
				up, err := net.Dial("tcp", req.Host)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				tunnels.Add(1)
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String(), tunnels
}

// secretForms is each secret as it could leak: as is, and base64-encoded
// alone and inside the SASL and HTTP encodings that carry it.
func secretForms(secrets []string, encoded ...string) []string {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	var forms []string
	for _, s := range secrets {
		forms = append(forms, s, b64(s), base64.RawURLEncoding.EncodeToString([]byte(s)))
	}
	for _, e := range encoded {
		forms = append(forms, b64(e))
	}
	return forms
}

// TestSecretsNeverShown: SMTP on the unix socket → relayq ([relay] debug,
// log level debug) → through an HTTP CONNECT proxy with a password →
// smtptest relay over STARTTLS that refuses the first AUTHs (535, its text
// quoting the credentials back: the AUTH PLAIN or XOAUTH2 response in
// base64, the password or token as it is), then accepts. Once with a password (type login), once with OAuth2 (client
// secret and refresh token to a token endpoint, which hands out an access
// token). The daemon's whole log, `queue list --json`, `queue show` of the
// deferred message (its 535 reply, and the transcript of that attempt's
// AUTH exchange), `queue show --json`, `dead list`, `status`, `verify` and
// `verify --json --debug` are grepped for each secret, raw and base64 (alone,
// and as AUTH PLAIN, XOAUTH2, OAUTHBEARER and Basic carry them).
func TestSecretsNeverShown(t *testing.T) {
	const (
		user         = "relayq@example.com"
		pass         = "Pw7seCretLogin42"
		proxyUser    = "proxyuser"
		proxyPass    = "Pw7seCretProxy42"
		clientID     = "relayq-client"
		clientSecret = "Pw7seCretClient42"
		refreshToken = "Pw7seCretRefresh42"
		accessToken  = "Pw7seCretAccess42"
	)
	tests := []struct {
		name    string
		relay   smtptest.Options
		auth    func(s settings, tokenURL string)
		secrets []string
		encoded []string // plain strings whose base64 form must not appear either
		echo    string   // the relay's 535 text, quoting the credentials back
	}{
		{
			name:  "login",
			relay: smtptest.Options{Auth: map[string]string{user: pass}},
			auth: func(s settings, _ string) {
				s.set("relay.auth", "user", tomlString(user))
				s.set("relay.auth", "pass", tomlString(pass))
			},
			secrets: []string{pass, proxyPass},
			encoded: []string{"\x00" + user + "\x00" + pass, proxyUser + ":" + proxyPass},
			echo: "5.7.8 AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)) +
				" rejected: password " + pass + " is wrong",
		},
		{
			name:  "oauth2",
			relay: smtptest.Options{Tokens: map[string]string{user: accessToken}},
			auth: func(s settings, tokenURL string) {
				s.set("relay.auth", "type", `"oauth2"`)
				s.set("relay.auth", "user", tomlString(user))
				s.set("relay.auth", "client_id", tomlString(clientID))
				s.set("relay.auth", "client_secret", tomlString(clientSecret))
				s.set("relay.auth", "refresh_token", tomlString(refreshToken))
				s.set("relay.auth", "token_url", tomlString(tokenURL))
			},
			secrets: []string{clientSecret, refreshToken, accessToken, proxyPass},
			encoded: []string{
				"user=" + user + "\x01auth=Bearer " + accessToken + "\x01\x01",
				"n,a=" + user + ",\x01auth=Bearer " + accessToken + "\x01\x01",
				clientID + ":" + clientSecret, proxyUser + ":" + proxyPass,
			},
			echo: "5.7.8 XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user="+user+"\x01auth=Bearer "+accessToken+"\x01\x01")) +
				" rejected: token " + accessToken + " is wrong",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var refreshes atomic.Int32
			endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				if r.PostForm.Get("refresh_token") != refreshToken {
					http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
					return
				}
				refreshes.Add(1)
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"access_token": accessToken, "token_type": "Bearer", "expires_in": 3600})
			}))
			defer endpoint.Close()
			opts := tt.relay
			opts.TLS = true
			opts.Script.Auth = smtptest.Times(3, smtptest.Reply(535, tt.echo))
			relay := smtptest.NewServer(t, opts)
			proxyAddr, tunnels := connectProxy(t, proxyUser, proxyPass)
			d := newDaemon(t, relay, func(s settings) {
				s.set("log", "level", `"debug"`)
				s.set("relay", "debug", "true")
				s.set("relay", "proxy", tomlString("http://"+proxyUser+":"+proxyPass+"@"+proxyAddr))
				s.set("retry", "initial_interval", `"1s"`)
				s.set("retry", "max_interval", `"1s"`)
				tt.auth(s, endpoint.URL)
			})
			trustRelay(t, d, relay)
			d.writeConfig()
			d.start()

			var outputs []string // "what: text"
			collect := func(what string, r cmdResult) {
				outputs = append(outputs, what+" stdout: "+r.stdout, what+" stderr: "+r.stderr)
			}
			from, to := "secret@example.org", []string{"rcpt@example.net"}
			body := newMessage(1, from, to, 3)
			id := d.submit(t, from, to, body)
			last := waitDeferred(t, d, id)
			if !strings.Contains(last.LastReply, "535") {
				t.Errorf("last reply %q, want the relay's 535", last.LastReply)
			}
			collect("queue list --json", d.relayq("queue", "list", "--json"))
			show := d.relayq("queue", "show", id)
			collect("queue show", show)
			collect("queue show --json", d.relayq("queue", "show", "--json", id))
			if _, tr, _ := strings.Cut(show.stdout, "Transcript of the last attempt"); !strings.Contains(tr, "C: AUTH ") ||
				!strings.Contains(tr, "<redacted>") || !strings.Contains(tr, "S: 535 ") {
				t.Errorf("queue show has no transcript of the refused AUTH: the test proves nothing about it:\n%s", show.stdout)
			}
			collect("dead list", d.relayq("dead", "list"))
			collect("status", d.relayq("status"))
			for _, args := range [][]string{nil, {"--json", "--debug"}} {
				r := runCmdTimeout(30*time.Second, relayqBin, nil, append([]string{"verify", "-c", d.config}, args...)...)
				collect("verify "+strings.Join(args, " "), r)
			}

			got := relay.WaitMessages(t, 1, 20*time.Second)
			if got[0].AuthUser != user || !sameMessage(got[0].Body, body) {
				t.Errorf("relay got the message as %q, want it authenticated as %s", got[0].AuthUser, user)
			}
			if tunnels.Load() == 0 {
				t.Errorf("nothing went through the proxy")
			}
			if tt.name == "oauth2" && refreshes.Load() == 0 {
				t.Errorf("the token endpoint was never asked: the test proves nothing about the refresh token")
			}
			d.waitQueueEmpty(t, 10*time.Second)
			collect("queue list --json (empty)", d.relayq("queue", "list", "--json"))
			d.stop()
			outputs = append(outputs, "daemon log: "+d.log.String())

			forms := secretForms(tt.secrets, tt.encoded...)
			for _, out := range outputs {
				for _, f := range forms {
					if strings.Contains(out, f) {
						what, _, _ := strings.Cut(out, ": ")
						t.Errorf("%s shows the secret form %q", what, f)
					}
				}
			}
			if !strings.Contains(d.log.String(), "AUTH") {
				t.Errorf("the debug log has no AUTH line: the test proves nothing about the conversation log")
			}
		})
	}
}

// TestTokenEndpointErrorNeverShown: SMTP on the unix socket → relayq
// (OAuth2, log level debug, [relay] debug) whose token endpoint refuses
// every refresh with an error_description quoting the client secret and
// the refresh token (as sent, URL-encoded, in base64). The message is
// deferred with the endpoint's invalid_grant; the daemon's log, `queue
// show` (reply and transcript), `queue list --json` and `status` hold no
// form of either secret.
func TestTokenEndpointErrorNeverShown(t *testing.T) {
	const (
		user         = "relayq@example.com"
		clientSecret = "Pw7/seCret+Client42"
		refreshToken = "1//Pw7seCretRefresh42"
	)
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		desc := "client_secret " + r.PostForm.Get("client_secret") + " (" + url.QueryEscape(clientSecret) + ", " +
			base64.StdEncoding.EncodeToString([]byte(clientSecret)) + ") cannot refresh " + r.PostForm.Get("refresh_token") +
			" (" + url.QueryEscape(refreshToken) + ")"
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": desc})
	}))
	defer endpoint.Close()
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Tokens: map[string]string{user: "unused"}})
	d := newDaemon(t, relay, func(s settings) {
		s.set("log", "level", `"debug"`)
		s.set("relay", "debug", "true")
		s.set("relay.auth", "type", `"oauth2"`)
		s.set("relay.auth", "user", tomlString(user))
		s.set("relay.auth", "client_id", tomlString("relayq-client"))
		s.set("relay.auth", "client_secret", tomlString(clientSecret))
		s.set("relay.auth", "refresh_token", tomlString(refreshToken))
		s.set("relay.auth", "token_url", tomlString(endpoint.URL))
	})
	trustRelay(t, d, relay)
	d.writeConfig()
	d.start()
	from, to := "secret@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))
	last := waitDeferred(t, d, id)
	if !strings.Contains(last.LastReply, "invalid_grant") {
		t.Errorf("last reply %q, want the token endpoint's invalid_grant", last.LastReply)
	}
	outputs := map[string]string{}
	for name, args := range map[string][]string{
		"queue show": {"queue", "show", id}, "queue show --json": {"queue", "show", "--json", id},
		"queue list --json": {"queue", "list", "--json"}, "status": {"status"},
	} {
		r := d.relayq(args...)
		outputs[name] = r.stdout + r.stderr
	}
	d.stop()
	outputs["daemon log"] = d.log.String()
	forms := secretForms([]string{clientSecret, refreshToken, url.QueryEscape(clientSecret), url.QueryEscape(refreshToken)})
	for what, out := range outputs {
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Errorf("%s shows the secret form %q", what, f)
			}
		}
	}
	if !strings.Contains(outputs["daemon log"], "invalid_grant") {
		t.Errorf("the daemon log never shows the endpoint's error: the test proves nothing about it")
	}
}

// TestCertificateNameMismatch: SMTP on the unix socket → relayq → smtptest
// relay whose certificate, from a CA relayq trusts (ca_file), is for
// mail.example.org while relayq connects to 127.0.0.1. Refused by default:
// deferred with a reason naming the mismatch, MAIL never sent. With
// tls.servername = "mail.example.org" the same certificate is accepted and
// the message delivered over TLS.
func TestCertificateNameMismatch(t *testing.T) {
	ca := smtptest.NewCA(t)
	relay := smtptest.NewServer(t, smtptest.Options{TLS: true, Certificate: ca.Issue(t, "mail.example.org")})
	d := newDaemon(t, relay)
	caFile := filepath.Join(d.dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	d.settings.set("relay.tls", "ca_file", tomlString(caFile))
	d.writeConfig()
	d.start()
	from, to := "name@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 3)
	id := d.submit(t, from, to, body)
	r := waitDeferred(t, d, id)
	t.Logf("last reply: %q", r.LastReply)
	if !strings.Contains(r.LastReply, "certificate") || !strings.Contains(r.LastReply, "mail.example.org") {
		t.Errorf("last reply %q, want it to say the certificate is for mail.example.org", r.LastReply)
	}
	if sawMail(relay) {
		t.Errorf("relay saw MAIL although its certificate names another host")
	}

	d.stop()
	d.settings.set("relay.tls", "servername", `"mail.example.org"`)
	d.writeConfig()
	d.start()
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if !got[0].TLS || !sameMessage(got[0].Body, body) {
		t.Errorf("delivered with TLS %v; want the message over TLS", got[0].TLS)
	}
}

// TestAuthNeedsTLS: SMTP on the unix socket → relayq with a login →
// smtptest relay without STARTTLS that offers AUTH in clear. By default
// relayq does not send the credentials: the message is deferred and the
// relay sees neither AUTH nor the password. With allow_insecure (the relay is
// on loopback) it authenticates in clear and delivers.
func TestAuthNeedsTLS(t *testing.T) {
	const pass = "Pw7clearText42"
	relay := smtptest.NewServer(t, smtptest.Options{Auth: map[string]string{"relayq": pass}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("relay.auth", "user", `"relayq"`)
		s.set("relay.auth", "pass", tomlString(pass))
	})
	from, to := "clear@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 3)
	id := d.submit(t, from, to, body)
	r := waitDeferred(t, d, id)
	t.Logf("last reply: %q", r.LastReply)
	for _, c := range relay.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), "AUTH") || strings.HasPrefix(strings.ToUpper(c), "MAIL") {
			t.Errorf("relay saw %q without TLS", c)
		}
	}
	if bytes.Contains(relay.Wire(), []byte(base64.StdEncoding.EncodeToString([]byte("\x00relayq\x00"+pass)))) {
		t.Errorf("the password went over the wire in clear")
	}

	d.stop()
	d.settings.set("relay.auth", "allow_insecure", "true")
	d.writeConfig()
	d.start()
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if got[0].AuthUser != "relayq" || got[0].TLS || !sameMessage(got[0].Body, body) {
		t.Errorf("with allow_insecure: delivered as %q, TLS %v; want authenticated in clear", got[0].AuthUser, got[0].TLS)
	}
}

// TestConfigSecretWarning: relayq serve with a password written in a
// config file of mode 0644 warns at start, naming the file and the chmod;
// at 0600 it does not. Either way it starts.
func TestConfigSecretWarning(t *testing.T) {
	d := newDaemon(t, nil, func(s settings) {
		s.set("relay.auth", "user", `"relayq"`)
		s.set("relay.auth", "pass", `"Pw7warn42"`)
		s.set("relay.auth", "allow_insecure", "true")
	})
	if err := os.Chmod(d.config, 0o644); err != nil {
		t.Fatal(err)
	}
	d.start()
	warn := "readable by other users"
	log := d.log.String()
	if !strings.Contains(log, warn) || !strings.Contains(log, "file="+d.config) || !strings.Contains(log, "chmod 600 "+d.config) {
		t.Errorf("no warning naming %s and chmod 600 in the log:\n%s", d.config, log)
	}
	if strings.Contains(log, "Pw7warn42") {
		t.Errorf("the warning shows the password")
	}
	d.stop()
	if err := os.Chmod(d.config, 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(d.log.String())
	d.start()
	if strings.Contains(d.log.String()[before:], warn) {
		t.Errorf("warned about a 0600 config file")
	}
}

// TestSpoolModes: what relayq serve creates in a state directory that does
// not exist yet: the directory 0711 (reach the sockets by name, list
// nothing), queue.db 0600, the control socket 0600, the submission socket
// and the maildrop as socket_mode and socket_group say (0666 → maildrop
// 01733; 0660 with a group → maildrop 01730 in that group).
func TestSpoolModes(t *testing.T) {
	tests := []struct {
		name         string
		mode, group  string // socket_mode, socket_group ("" = default)
		wantSocket   os.FileMode
		wantMaildrop os.FileMode
		wantGID      int // -1: any
	}{
		{"default", "", "", 0o666, os.ModeSticky | 0o733, -1},
		{"group", "0660", submitGroupS, 0o660, os.ModeSticky | 0o730, submitGroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.group != "" {
				needRoot(t) // chown to a group relayq's user is not in
			}
			var state string
			d := newDaemon(t, nil, func(s settings) {
				dir := strings.Trim(s[""]["state_dir"], `"`)
				state = filepath.Join(dir, "state")
				s.set("", "state_dir", tomlString(state))
				s.set("submission", "socket", tomlString(filepath.Join(dir, "submit.sock")))
				s.set("control", "socket", tomlString(filepath.Join(dir, "control.sock")))
				if tt.mode != "" {
					s.set("submission", "socket_mode", tomlString(tt.mode))
					s.set("submission", "socket_group", tomlString(tt.group))
				}
			})
			d.start()
			check := func(path string, want os.FileMode, gid int) {
				t.Helper()
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode() & (os.ModePerm | os.ModeSticky); got != want {
					t.Errorf("%s: mode %v, want %v", filepath.Base(path), got, want)
				}
				if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && int(st.Gid) != gid {
					t.Errorf("%s: group %d, want %d", filepath.Base(path), st.Gid, gid)
				}
			}
			check(state, 0o711, -1)
			check(filepath.Join(state, "queue.db"), 0o600, -1)
			check(filepath.Join(state, "maildrop"), tt.wantMaildrop, tt.wantGID)
			check(d.submitSocket(), tt.wantSocket, tt.wantGID)
			check(d.controlSocket(), 0o600, -1)
		})
	}
}

// TestControlSocketAdminGroup: relayq's queue commands run as nobody →
// the control socket of a daemon with control.admin_group = 4242. nobody
// with 4242 among its groups lists the queue; nobody without it is still
// refused (77).
func TestControlSocketAdminGroup(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	d := startDaemon(t, nil, func(s settings) {
		s.set("control", "admin_group", tomlString(submitGroupS))
	})
	openStateDir(t, d)
	from, to := "admin@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))
	r := asUser(bin, nobody, nobody, []uint32{submitGroup}, nil, "queue", "list", "--json", "-c", d.config)
	if r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Errorf("queue list as a member of admin_group: %v; want exit 0 listing %s", r, id)
	}
	r = asUser(bin, nobody, nobody, nil, nil, "queue", "list", "--json", "-c", d.config)
	if r.code != 77 || strings.Contains(r.stdout, id) {
		t.Errorf("queue list as nobody outside admin_group: %v; want exit 77", r)
	}
}
