package rewrite

import "strings"

// splitAddr returns the local part and the domain of a ("" when it has
// none).
func splitAddr(a string) (local, domain string) {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a, ""
	}
	return a[:at], a[at+1:]
}

// isLocal reports whether a has no domain or one of the local domains.
func (r *Rules) isLocal(a string) bool {
	_, d := splitAddr(a)
	return d == "" || r.local[strings.ToLower(d)]
}

// qualify gives an address without a domain, or at one of this host's
// names, the rewrite domain: "root" and "root@vm" become "root@DOMAIN".
// Other addresses are returned as they are.
func (r *Rules) qualify(a string) string {
	if a == "" || !r.isLocal(a) || r.opts.Domain == "" {
		return a
	}
	l, _ := splitAddr(a)
	return l + "@" + r.opts.Domain
}

// masquerade strips the host part of a domain under one of
// Options.Masquerade: "user@host.example.com" becomes "user@example.com".
// The first masquerade domain that matches wins.
func (r *Rules) masquerade(a string) string {
	l, d := splitAddr(a)
	if d == "" {
		return a
	}
	ld := strings.ToLower(d)
	for _, m := range r.opts.Masquerade {
		if strings.HasSuffix(ld, "."+strings.ToLower(m)) {
			return l + "@" + m
		}
	}
	return a
}
