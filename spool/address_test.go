package spool

import (
	"reflect"
	"strings"
	"testing"
)

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"root@example.org", true},
		{"first.last+tag@mail.example.org", true},
		{"o'brien@example.org", true},
		{"jörg@exämple.de", true},
		{"a@[192.0.2.1]", true},
		{"a@[IPv6:2001:db8::1]", true},
		{"a@localhost", true},
		{strings.Repeat("l", 64) + "@example.org", true},
		{"", false},
		{"root", false},
		{"@example.org", false},
		{"a@", false},
		{"a b@example.org", false},
		{"a@exa mple.org", false},
		{"<a@example.org>", false},
		{"a@example.org> SIZE=1", false},
		{"a@example.org\r\nRCPT TO:<x@y>", false},
		{"a@example.org\x00", false},
		{"a\x7f@example.org", false},
		{"a\u0085@example.org", false},
		{"-X/tmp/log@example.org", false},
		{".a@example.org", false},
		{"a.@example.org", false},
		{"a..b@example.org", false},
		{"a@b..c", false},
		{"a@-b.c", false},
		{"a@b-.c", false},
		{"a@[1.2.3.4", false},
		{"a@[1.2 3.4]", false},
		{"a@[ipv6:::1]", true},
		{"a@[1.2.3]", false},
		{"a@[IPv6:1.2.3.4]", false},
		{"a@[IPv6:fe80::1%eth0]", false},
		{`a@[x:"]`, false},
		{"a@[tag:<b>]", false},
		{"\"quoted\"@example.org", false},
		{strings.Repeat("l", 65) + "@example.org", false},
		{"a@" + strings.Repeat("d", 250) + ".org", false},
		{"a@b\xffc", false},
	}
	for _, tt := range tests {
		if err := checkAddress(tt.addr); (err == nil) != tt.ok {
			t.Errorf("checkAddress(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}
}

func TestAddressKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"a@example.org", "a@EXAMPLE.org", true},
		{"a@example.org", "A@example.org", false},
		{"a@example.org", "b@example.org", false},
	}
	for _, tt := range tests {
		if same := addressKey(tt.a) == addressKey(tt.b); same != tt.same {
			t.Errorf("%q and %q the same: %v, want %v", tt.a, tt.b, same, tt.same)
		}
	}
}

func TestNeedsUTF8(t *testing.T) {
	tests := []struct {
		from  string
		rcpts []string
		want  bool
	}{
		{"a@example.org", []string{"b@example.org"}, false},
		{"", []string{"b@example.org"}, false},
		{"jörg@example.org", []string{"b@example.org"}, true},
		{"a@example.org", []string{"b@example.org", "b@exämple.org"}, true},
	}
	for _, tt := range tests {
		if got := needsUTF8(tt.from, tt.rcpts); got != tt.want {
			t.Errorf("needsUTF8(%q, %q) = %v", tt.from, tt.rcpts, got)
		}
	}
}

func TestSplitAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a, b", []string{"a", " b"}},
		{`"Last, First" <a>, b`, []string{`"Last, First" <a>`, " b"}},
		{"A (x, y) <a>,b", []string{"A (x, y) <a>", "b"}},
		{"<a,b>, c", []string{"<a,b>", " c"}},
		{`"a\", b" <a>`, []string{`"a\", b" <a>`}},
		{" , a,, ", []string{" a"}},
	}
	for _, tt := range tests {
		if got := splitAddressList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitAddressList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestQualify(t *testing.T) {
	tests := []struct{ in, want string }{
		{"root", "root@host.test"},
		{" root ", "root@host.test"},
		{"Root <root>", "Root <root@host.test>"},
		{"a@example.org", "a@example.org"},
		{"A <a@example.org>", "A <a@example.org>"},
	}
	for _, tt := range tests {
		if got := qualify(tt.in, "host.test"); got != tt.want {
			t.Errorf("qualify(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
