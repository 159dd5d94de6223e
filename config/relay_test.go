package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRelayURLEquivalence: a url and the separate keys it stands for load to
// the same relay, and so does a config that sets both, agreeing.
func TestRelayURLEquivalence(t *testing.T) {
	type where struct {
		Host         string
		Port         int
		Secure, LMTP bool
		Socket       string
		User, Pass   string
	}
	tests := []struct {
		url  string
		keys string // the same relay, in keys under [relay]
		want where
	}{
		{"smtp://u:p%40x@h:587", "host = \"h\"\nport = 587\n[relay.auth]\nuser = \"u\"\npass = \"p@x\"\n",
			where{Host: "h", Port: 587, User: "u", Pass: "p@x"}},
		{"smtp://h", "host = \"h\"\n", where{Host: "h", Port: 587}},
		{"smtp://localhost:25", "port = 25\n", where{Host: "localhost", Port: 25}},
		{"smtps://h", "host = \"h\"\nsecure = true\n", where{Host: "h", Port: 465, Secure: true}},
		{"smtps://h:2465/", "host = \"h\"\nsecure = true\nport = 2465\n", where{Host: "h", Port: 2465, Secure: true}},
		{"lmtp://h", "host = \"h\"\nlmtp = true\n", where{Host: "h", Port: 24, LMTP: true}},
		{"lmtp+unix:///run/x.sock", "lmtp = true\nsocket = \"/run/x.sock\"\n", where{LMTP: true, Socket: "/run/x.sock"}},
		{"smtp://[::1]:2525", "host = \"::1\"\nport = 2525\n", where{Host: "::1", Port: 2525}},
		{"smtp://us%3Aer:p%3Ass@h", "host = \"h\"\n[relay.auth]\nuser = \"us:er\"\npass = \"p:ss\"\n",
			where{Host: "h", Port: 587, User: "us:er", Pass: "p:ss"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			l := testLoader(t)
			fromURL := mustParse(t, l, "[relay]\nurl = \""+tt.url+"\"\n").Relay
			fromKeys := mustParse(t, l, "[relay]\n"+tt.keys).Relay
			both := mustParse(t, l, "[relay]\nurl = \""+tt.url+"\"\n"+tt.keys).Relay
			r := fromURL
			got := where{r.Host, r.Port, r.Secure, r.LMTP, r.Socket, r.Auth.User, r.Auth.Pass}
			if got != tt.want {
				t.Errorf("url gives %+v, want %+v", got, tt.want)
			}
			fromURL.URL, both.URL = "", ""
			if !reflect.DeepEqual(fromURL, fromKeys) {
				t.Errorf("url and keys differ:\nurl:  %+v\nkeys: %+v", fromURL, fromKeys)
			}
			if !reflect.DeepEqual(both, fromKeys) {
				t.Errorf("url with agreeing keys differs:\nboth: %+v\nkeys: %+v", both, fromKeys)
			}
		})
	}
}

func TestRelayURLQueryOptions(t *testing.T) {
	r := mustParse(t, testLoader(t), `[relay]
url = "smtp://h?max_connections=2&max_messages=10&connection_timeout=1m&name=me.example&tls.require_tls=true&tls.servername=s.example&tls.reject_unauthorized=false"
`).Relay
	if r.MaxConnections != 2 || r.MaxMessages != 10 || r.ConnectionTimeout.Duration != time.Minute || r.Name != "me.example" {
		t.Errorf("relay options: %+v", r)
	}
	if !r.TLS.RequireTLS || r.TLS.ServerName != "s.example" || r.TLS.RejectUnauthorized {
		t.Errorf("relay.tls options: %+v", r.TLS)
	}
}

// TestRelayURLConflicts: a key set both ways that disagrees is an error
// naming both keys, on the line of the key.
func TestRelayURLConflicts(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"port", "url = \"smtp://h:25\"\nport = 587\n", "test.toml:3: relay.port: 587 disagrees with relay.url, which says 25"},
		{"host", "url = \"smtp://h\"\nhost = \"other\"\n", "test.toml:3: relay.host: \"other\" disagrees with relay.url, which says \"h\""},
		{"secure", "url = \"smtp://h\"\nsecure = true\n", "test.toml:3: relay.secure: true disagrees with relay.url, which says false"},
		{"lmtp", "url = \"smtps://h\"\nlmtp = true\n", "test.toml:3: relay.lmtp: true disagrees with relay.url, which says false"},
		{"socket", "url = \"lmtp+unix:///a\"\nsocket = \"/b\"\n", "test.toml:3: relay.socket: \"/b\" disagrees with relay.url, which says \"/a\""},
		{"user", "url = \"smtp://u:p@h\"\n[relay.auth]\nuser = \"v\"\n", "test.toml:4: relay.auth.user: \"v\" disagrees with relay.url"},
		{"option", "url = \"smtp://h?max_messages=3\"\nmax_messages = 100\n", "test.toml:3: relay.max_messages: 100 disagrees with relay.url, which says 3"},
		{"tls option", "url = \"smtp://h?tls.ignore_tls=true\"\n[relay.tls]\nignore_tls = false\n", "test.toml:4: relay.tls.ignore_tls: false disagrees with relay.url, which says true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testLoader(t).parse([]byte("[relay]\n"+tt.text), "test.toml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n  %v\nwant:\n  %s", err, tt.want)
			}
		})
	}
	t.Run("password", func(t *testing.T) {
		_, err := testLoader(t).parse([]byte("[relay]\nurl = \"smtp://u:s3cret@h\"\n[relay.auth]\npass = \"t0psecret\"\n"), "test.toml")
		want := "test.toml:4: relay.auth.pass: disagrees with relay.url"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error:\n  %v\nwant:\n  %s", err, want)
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0psecret") {
			t.Errorf("error shows a password: %v", err)
		}
	})
}

// TestRelayURLErrors: a bad url is reported on relay.url, without quoting
// the url (and so its password).
func TestRelayURLErrors(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://h", `unknown scheme "http": use smtp://, smtps://, lmtp:// or lmtp+unix://`},
		{"smtp:h", "expected smtp://host"},
		{"smtp://", "no host: use smtp://host[:port]"},
		{"smtp://u:s3cret@h:0", "0 is not a port (1-65535)"},
		{"smtp://u:s3cret@h:99999", "99999 is not a port (1-65535)"},
		{"smtp://u:s3cret@h:x", `not a valid url: invalid port ":x" after host`},
		{"smtp://u:s3cret@h/path", `unexpected path "/path"`},
		{"smtp://u:s3cret@h#frag", "unexpected #fragment"},
		{"smtp://:s3cret@h", "the user before the @ is empty"},
		{"smtp://u:s3cret@h?pooled=true", `unknown query option "pooled"`},
		{"smtp://u:s3cret@h?port=25", `unknown query option "port"`},
		{"smtp://u:s3cret@h?tls=x", `unknown query option "tls"`},
		{"smtp://u:s3cret@h?max_messages=1&max_messages=2", `query option "max_messages" is given twice`},
		{"smtp://u:s3cret@h?max_messages=many", `query option max_messages: "many" is not an integer`},
		{"smtp://u:s3cret@h?tls.require_tls=yes", `query option tls.require_tls: "yes" is not true or false`},
		{"smtp://u:s3cret@h?socket_timeout=5", `query option socket_timeout: "5" is not a duration`},
		{"smtp://u:s3cret@h?%zz", "bad query"},
		{"lmtp+unix://run/x.sock", "lmtp+unix takes an absolute socket path"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := testLoader(t).parse([]byte("[relay]\nurl = \""+tt.url+"\"\n"), "test.toml")
			want := "test.toml:2: relay.url: " + tt.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n  %v\nwant:\n  %s", err, want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestServerNameDefaultsToHost(t *testing.T) {
	tests := []struct{ text, want string }{
		{"[relay]\nurl = \"smtps://mail.example.com\"\n", "mail.example.com"},
		{"[relay]\nhost = \"192.0.2.1\"\n[relay.tls]\nservername = \"mail.example.com\"\n", "mail.example.com"},
		{"[relay]\nurl = \"lmtp+unix:///run/lmtp\"\n", ""},
	}
	for _, tt := range tests {
		if got := mustParse(t, testLoader(t), tt.text).Relay.TLS.ServerName; got != tt.want {
			t.Errorf("config:\n%s\nservername = %q, want %q", tt.text, got, tt.want)
		}
	}
}
