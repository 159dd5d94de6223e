package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"relayq/config"
)

// relayq import-postfix: turn a Postfix null client's settings (postconf -n)
// into a relayq config, and say what is left in Postfix's queue. It writes
// the config and the relay password file; --dry-run writes nothing.

const importPostfixSynopsis = "relayq import-postfix [--dry-run] [--postconf FILE] [--output FILE] [--pass-file FILE] | --queue [--dry-run] [--queue-dir DIR]"

const importPostfixHelp = `
Reads Postfix's settings (the output of postconf -n, or --postconf FILE) and
writes an equivalent relayq config: relayhost becomes [relay] url (smtps://
for port 465 or smtp_tls_wrappermode = yes, else smtp:// with STARTTLS);
the relayhost's entry in smtp_sasl_password_maps becomes [relay.auth] user
and a pass_file (mode 0600, owned by the relayq user); smtp_tls_security_level
encrypt, verify or secure becomes tls.require_tls, none tls.ignore_tls;
myhostname becomes [submission] hostname, myorigin [rewrite] domain. It
prints each other setting it could not translate, with the relayq key that
comes closest, and how many messages Postfix's queue still holds.

With --queue it writes no config: it submits each message left in
Postfix's queue (maildrop, active, deferred, hold) to relayq, with its
sender and the recipients Postfix had not delivered yet, and removes the
queue file once relayq has the message. Postfix must be stopped (it is,
once the relayq package replaced it); relayq's config must be in place.

  --dry-run        print the config and the report; write nothing
  --postconf FILE  read postconf -n output from FILE ("-": standard input)
                   instead of running postconf -n (or, with Postfix removed,
                   reading /etc/postfix/main.cf)
  --output FILE    where the config goes (default /etc/relayq/config.toml;
                   an existing file is kept as FILE.bak)
  --pass-file FILE where the relay password goes (default
                   /etc/relayq/relay.pass)
  --queue          submit the messages of Postfix's queue to relayq
                   (with --dry-run: list them)
  --queue-dir DIR  Postfix's queue_directory (default /var/spool/postfix)
`

func runImportPostfix(args []string, env cmdEnv) int {
	fs := newFlags("import-postfix", importPostfixSynopsis, env)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n%s", importPostfixSynopsis, importPostfixHelp)
	}
	dryRun := fs.Bool("dry-run", false, "print, write nothing")
	postconfFile := fs.String("postconf", "", "postconf -n output")
	output := fs.String("output", config.SystemConfigPath, "config file to write")
	passFile := fs.String("pass-file", "/etc/relayq/relay.pass", "password file to write")
	queue := fs.Bool("queue", false, "submit Postfix's queued messages")
	queueDir := fs.String("queue-dir", "/var/spool/postfix", "Postfix's queue_directory")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	if *queue {
		return importPostfixQueue(*queueDir, *dryRun, env) // import_postfix_queue.go
	}
	raw, err := readPostconf(*postconfFile, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq import-postfix: %v\n", err)
		return exitNoInput
	}
	imp := translatePostfix(parsePostconf(raw), *passFile)
	if _, err := parseGenerated(imp.config); err != nil {
		fmt.Fprintf(env.Stderr, "relayq import-postfix: the translated config does not load: %v\n%s", err, imp.config)
		return exitConfig
	}
	if *dryRun {
		fmt.Fprint(env.Stdout, imp.config)
		imp.report(env.Stderr)
		return exitOK
	}
	if imp.password != "" {
		if err := writeSecret(*passFile, imp.password); err != nil {
			fmt.Fprintf(env.Stderr, "relayq import-postfix: %v\n", err)
			return exitCantCreate
		}
		fmt.Fprintf(env.Stdout, "wrote %s (mode 0600)\n", *passFile)
	}
	if err := writeConfig(*output, imp.config); err != nil {
		fmt.Fprintf(env.Stderr, "relayq import-postfix: %v\n", err)
		return exitCantCreate
	}
	fmt.Fprintf(env.Stdout, "wrote %s\n", *output)
	imp.report(env.Stderr)
	return exitOK
}

// postfixMainCf is read when postconf is not installed.
const postfixMainCf = "/etc/postfix/main.cf"

// readPostconf returns postconf -n's output: from file ("-" is stdin), or
// by running postconf.
func readPostconf(file string, env cmdEnv) ([]byte, error) {
	switch file {
	case "":
		if _, err := exec.LookPath("postconf"); err != nil {
			// Postfix removed (apt remove keeps its conffiles): main.cf
			// holds what postconf -n prints, in the same form.
			return os.ReadFile(postfixMainCf)
		}
		out, err := exec.Command("postconf", "-n").Output()
		if err != nil {
			return nil, fmt.Errorf("postconf -n: %w (is Postfix installed? else give --postconf FILE)", err)
		}
		return out, nil
	case "-":
		return io.ReadAll(env.Stdin)
	}
	return os.ReadFile(file)
}

// parsePostconf reads "name = value" lines; a line starting with white
// space continues the one before, as in main.cf.
func parsePostconf(data []byte) map[string]string {
	params := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				params[last] = strings.TrimSpace(params[last] + " " + strings.TrimSpace(line))
			}
		default:
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			last = strings.TrimSpace(name)
			params[last] = strings.TrimSpace(value)
		}
	}
	return params
}

// postfixImport is what translatePostfix made of Postfix's settings.
type postfixImport struct {
	config   string   // the relayq config file
	password string   // for pass_file, "" for none
	notes    []string // what was not translated, or only in part
	queued   string   // what Postfix's queue still holds, "" if empty
}

func (imp *postfixImport) report(w io.Writer) {
	for _, n := range imp.notes {
		fmt.Fprintln(w, "not translated: "+n)
	}
	if imp.queued != "" {
		fmt.Fprintln(w, imp.queued)
	}
}

// postfixCounterparts names, for Postfix parameters import-postfix does not
// translate, the relayq key that comes closest ("" when none does). Made on
// first use, as the other tables here: relayq sendmail starts without them.
var postfixCounterparts = sync.OnceValue(func() map[string]string {
	return map[string]string{
		"transport_maps":                  "none: relayq sends everything to the one [relay]",
		"sender_dependent_relayhost_maps": "none: relayq sends everything to the one [relay]",
		"smtp_generic_maps":               "[rewrite] envelope_from, from_header, masquerade_domains (one address for all, not a table)",
		"canonical_maps":                  "[rewrite] envelope_from, from_header (one address for all, not a table)",
		"sender_canonical_maps":           "[rewrite] envelope_from, from_header (one address for all, not a table)",
		"recipient_canonical_maps":        "[aliases] (local names only)",
		"virtual_alias_maps":              "[aliases] (local names only)",
		"inet_interfaces":                 "[submission] listen (loopback addresses only)",
		"mydestination":                   "none: relayq delivers nothing locally; local names go through [aliases]",
		"relay_domains":                   "none: relayq is not a relay for other hosts",
		"mynetworks":                      "none: relayq takes mail from this host only",
		"smtp_sasl_mechanism_filter":      "[relay.auth] method (one mechanism)",
		"smtp_tls_mandatory_protocols":    "[relay.tls] min_version",
		"smtp_tls_protocols":              "[relay.tls] min_version",
		"smtp_bind_address":               "[relay] local_address",
		"smtp_connect_timeout":            "[relay] connection_timeout",
		"smtp_helo_name":                  "[relay] name",
		"bounce_queue_lifetime":           "[retry] max_lifetime (one lifetime for all mail)",
		"mailbox_command":                 "none: relayq delivers nothing locally",
		"home_mailbox":                    "none: relayq delivers nothing locally",
	}
})

// postfixIgnored are parameters a Debian null client sets that need no
// counterpart: local delivery, the SMTP server, Postfix's own files.
var postfixIgnored = sync.OnceValue(func() map[string]bool {
	return map[string]bool{
		"compatibility_level": true, "biff": true, "append_dot_mydomain": true, "readme_directory": true,
		"alias_database": true, "recipient_delimiter": true, "mailbox_size_limit": true,
		"inet_protocols": true, "smtp_tls_session_cache_database": true, "smtp_sasl_auth_enable": true,
		"smtp_sasl_security_options": true, "smtp_sasl_tls_security_options": true, "smtp_use_tls": true,
		"smtp_enforce_tls": true, "smtp_tls_wrappermode": true, "relayhost": true, "smtp_sasl_password_maps": true,
		"smtp_tls_security_level": true, "myhostname": true, "myorigin": true, "mydomain": true,
		"smtp_tls_CAfile": true, "smtp_tls_cert_file": true, "smtp_tls_key_file": true, "masquerade_domains": true,
		"alias_maps": true, "message_size_limit": true, "maximal_queue_lifetime": true, "delay_warning_time": true,
		"smtp_tls_CApath": true, "queue_directory": true, "local_transport": true, "default_transport": true,
		"relay_transport": true, "smtp_tls_note_starttls_offer": true, "smtp_tls_loglevel": true,
		"smtpd_banner": true, "smtpd_relay_restrictions": true, "smtpd_recipient_restrictions": true,
		"smtpd_tls_cert_file": true, "smtpd_tls_key_file": true, "smtpd_tls_security_level": true,
		"smtpd_tls_session_cache_database": true, "smtpd_use_tls": true, "smtpd_tls_CAfile": true,
		"smtpd_tls_CApath": true, "smtpd_tls_loglevel": true, "smtpd_sasl_auth_enable": true,
		"local_recipient_maps": true, "setgid_group": true, "mail_owner": true, "command_directory": true,
		"daemon_directory": true, "data_directory": true, "manpage_directory": true, "html_directory": true,
		"sample_directory": true, "sendmail_path": true, "newaliases_path": true, "mailq_path": true,
		"meta_directory": true, "shlib_directory": true, "maillog_file": true,
	}
})

// configWriter collects "key = value" lines per table, in the order given.
type configWriter struct {
	tables []string
	lines  map[string][]string
}

func (c *configWriter) set(table, key, value string) {
	if c.lines == nil {
		c.lines = map[string][]string{}
	}
	if _, ok := c.lines[table]; !ok {
		c.tables = append(c.tables, table)
	}
	c.lines[table] = append(c.lines[table], key+" = "+value)
}

func (c *configWriter) String() string {
	var b strings.Builder
	b.WriteString("# relayq configuration, written by relayq import-postfix from Postfix's\n")
	b.WriteString("# settings. Every key not set here keeps its default: see\n")
	b.WriteString("# /usr/share/doc/relayq/config.toml.example and relayq.toml(5).\n")
	if len(c.lines[""]) > 0 {
		b.WriteString("\n" + strings.Join(c.lines[""], "\n") + "\n")
	}
	for _, t := range c.tables {
		if t == "" {
			continue
		}
		fmt.Fprintf(&b, "\n[%s]\n%s\n", t, strings.Join(c.lines[t], "\n"))
	}
	return b.String()
}

// translatePostfix makes the relayq config for Postfix's parameters.
func translatePostfix(p map[string]string, passFile string) *postfixImport {
	imp := &postfixImport{}
	var c configWriter
	expand := func(v string) string { return expandPostfix(v, p) }

	secure := false
	if relayhost := expand(p["relayhost"]); relayhost != "" {
		url, note := relayURL(relayhost, p["smtp_tls_wrappermode"] == "yes")
		c.set("relay", "url", strconv.Quote(url))
		secure = strings.HasPrefix(url, "smtps:")
		if note != "" {
			imp.notes = append(imp.notes, note)
		}
		if maps := p["smtp_sasl_password_maps"]; maps != "" && p["smtp_sasl_auth_enable"] == "yes" {
			user, pass, err := saslEntry(maps, relayhost)
			switch {
			case err != nil:
				imp.notes = append(imp.notes, "smtp_sasl_password_maps: "+err.Error()+"; set [relay.auth] user and pass_file by hand")
			default:
				c.set("relay.auth", "user", strconv.Quote(user))
				c.set("relay.auth", "pass_file", strconv.Quote(passFile))
				imp.password = pass
			}
		}
	} else {
		imp.notes = append(imp.notes, "relayhost is empty: Postfix delivered by MX itself; relayq needs a relay: set [relay] url")
	}
	if f := p["smtp_tls_CAfile"]; f != "" {
		c.set("relay.tls", "ca_file", strconv.Quote(f))
	}
	if cert, key := p["smtp_tls_cert_file"], p["smtp_tls_key_file"]; cert != "" && key != "" {
		c.set("relay.tls", "cert_file", strconv.Quote(cert))
		c.set("relay.tls", "key_file", strconv.Quote(key))
	}
	level := p["smtp_tls_security_level"]
	if level == "" && p["smtp_enforce_tls"] == "yes" {
		level = "encrypt"
	}
	switch level {
	case "encrypt", "verify", "secure", "dane", "dane-only", "fingerprint":
		if !secure {
			c.set("relay.tls", "require_tls", "true")
		}
		if level == "encrypt" || level == "dane" || level == "fingerprint" {
			imp.notes = append(imp.notes, "smtp_tls_security_level = "+level+": relayq also verifies the relay's certificate ([relay.tls] reject_unauthorized = true); set ca_file for a private CA")
		}
	case "none":
		if secure {
			imp.notes = append(imp.notes, "smtp_tls_security_level = none: the relay's port speaks TLS from the first byte (smtps://), so relayq uses TLS")
		} else {
			c.set("relay.tls", "ignore_tls", "true")
		}
	}
	if h := expand(p["myhostname"]); h != "" {
		c.set("submission", "hostname", strconv.Quote(h))
	}
	if o := p["myorigin"]; o != "" {
		domain := expand(o)
		if strings.HasPrefix(domain, "/") {
			data, err := os.ReadFile(domain)
			if err != nil {
				imp.notes = append(imp.notes, fmt.Sprintf("myorigin = %s: %v; set [rewrite] domain by hand", o, err))
				domain = ""
			} else {
				domain = strings.TrimSpace(string(data))
			}
		}
		if domain != "" {
			c.set("rewrite", "domain", strconv.Quote(domain))
		}
	}
	if m := p["masquerade_domains"]; m != "" {
		var q []string
		for _, d := range strings.FieldsFunc(expand(m), func(r rune) bool { return r == ',' || r == ' ' }) {
			q = append(q, strconv.Quote(strings.TrimPrefix(d, "!")))
		}
		c.set("rewrite", "masquerade_domains", "["+strings.Join(q, ", ")+"]")
	}
	if a := p["alias_maps"]; a != "" {
		translateAliases(a, &c, imp)
	}
	if s := p["message_size_limit"]; s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			c.set("submission", "max_message_size", strconv.Quote(strconv.FormatInt(n, 10)+"B"))
		}
	}
	// Postfix returns undeliverable mail to its sender; so does relayq then.
	c.set("notify", "bounce", `"sender"`)
	for _, d := range []struct{ param, table, key string }{
		{"maximal_queue_lifetime", "retry", "max_lifetime"},
		{"delay_warning_time", "notify", "delay_warning_after"},
	} {
		if v := p[d.param]; v != "" {
			if dur, ok := postfixDuration(v); ok {
				c.set(d.table, d.key, strconv.Quote(dur))
			} else {
				imp.notes = append(imp.notes, fmt.Sprintf("%s = %s: not a time; set [%s] %s by hand", d.param, v, d.table, d.key))
			}
		}
	}
	imp.notes = append(imp.notes, untranslated(p)...)
	imp.config = c.String()
	imp.queued = postfixQueueReport(p)
	return imp
}

// untranslated lists the parameters neither translated nor ignored, each
// with its counterpart when there is one, sorted by name.
func untranslated(p map[string]string) []string {
	var notes []string
	for name, value := range p {
		if postfixIgnored()[name] || (name == "mydestination" && value == "") {
			continue
		}
		counterpart, ok := postfixCounterparts()[name]
		if !ok {
			counterpart = "no relayq counterpart known"
		}
		notes = append(notes, fmt.Sprintf("%s = %s (relayq: %s)", name, value, counterpart))
	}
	sort.Strings(notes)
	return notes
}

// expandPostfix replaces $name and ${name} with the parameter's value, as
// postconf -n leaves them.
func expandPostfix(v string, p map[string]string) string {
	return os.Expand(v, func(name string) string { return p[name] })
}

// relayURL turns relayhost ("[host]:port", "host:port", "[host]", "host")
// into a relayq url: smtps:// for port 465 or wrapper mode, else smtp://.
// An unbracketed host is looked up by MX in Postfix; relayq connects to the
// name itself, which the note says.
func relayURL(relayhost string, wrapper bool) (url, note string) {
	host, port := relayhost, "25"
	if i := strings.LastIndex(relayhost, ":"); i > strings.LastIndex(relayhost, "]") {
		host, port = relayhost[:i], relayhost[i+1:]
	}
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !bracketed {
		note = "relayhost = " + relayhost + ": Postfix looks this name up by MX; relayq connects to " + host + " itself"
	}
	scheme := "smtp"
	if wrapper || port == "465" {
		scheme = "smtps"
	}
	if strings.Contains(host, ":") { // an IPv6 address
		host = "[" + strings.TrimPrefix(host, "ipv6:") + "]"
	}
	return scheme + "://" + host + ":" + port, note
}

// saslEntry finds relayhost's "user:password" in smtp_sasl_password_maps
// (hash:, btree:, lmdb:, texthash: or cdb: files: their text source), by
// the keys Postfix tries: relayhost as written, then the host alone.
func saslEntry(maps, relayhost string) (user, pass string, err error) {
	host := strings.TrimSuffix(strings.TrimPrefix(relayhost, "["), "]")
	if i := strings.LastIndex(relayhost, ":"); i > strings.LastIndex(relayhost, "]") {
		host = strings.TrimSuffix(strings.TrimPrefix(relayhost[:i], "["), "]")
	}
	for _, m := range strings.FieldsFunc(maps, func(r rune) bool { return r == ',' || r == ' ' }) {
		typ, path, ok := strings.Cut(m, ":")
		if !ok || !map[string]bool{"hash": true, "btree": true, "lmdb": true, "texthash": true, "cdb": true}[typ] {
			return "", "", fmt.Errorf("%s: only hash:, btree:, lmdb:, cdb: and texthash: files are read", m)
		}
		entries, err := readPostmap(path)
		if err != nil {
			return "", "", err
		}
		for _, key := range []string{relayhost, host, "[" + host + "]"} {
			if v, ok := entries[key]; ok {
				user, pass, _ := strings.Cut(v, ":")
				return user, pass, nil
			}
		}
	}
	return "", "", fmt.Errorf("no entry for %s in %s", relayhost, maps)
}

// readPostmap reads a postmap(1) source file: "key value" lines, # comments.
func readPostmap(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	entries := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		if k, v, ok := strings.Cut(line, "\t"); ok && len(k) < len(key) {
			key, value = k, v
		}
		entries[key] = strings.TrimSpace(value)
	}
	return entries, nil
}

// translateAliases makes the first local alias file of alias_maps
// [aliases] aliases_file; relayq refuses pipes and files in it.
func translateAliases(maps string, c *configWriter, imp *postfixImport) {
	for _, m := range strings.FieldsFunc(maps, func(r rune) bool { return r == ',' || r == ' ' }) {
		typ, path, ok := strings.Cut(m, ":")
		if ok && (typ == "hash" || typ == "lmdb" || typ == "btree" || typ == "cdb") && strings.HasPrefix(path, "/") {
			c.set("aliases", "aliases_file", strconv.Quote(path))
			return
		}
	}
	imp.notes = append(imp.notes, "alias_maps = "+maps+" (relayq: [aliases] aliases_file, an aliases(5) file)")
}

// postfixDuration turns a Postfix time ("5d", "4h", "30m", "90s", "2w",
// a bare number in the parameter's default unit, days for the lifetimes
// and hours for delay_warning_time: callers pass only those) into a Go
// duration string.
func postfixDuration(v string) (string, bool) {
	unit := v[len(v)-1]
	num := v
	hours := map[byte]float64{'s': 1.0 / 3600, 'm': 1.0 / 60, 'h': 1, 'd': 24, 'w': 168}
	h, ok := hours[unit]
	if ok {
		num = v[:len(v)-1]
	} else {
		h = 24 // a bare number: days for maximal_queue_lifetime
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return "", false
	}
	total := n * h
	if total == float64(int64(total)) {
		return strconv.FormatInt(int64(total), 10) + "h", true
	}
	return strconv.FormatInt(int64(total*3600), 10) + "s", true
}

// postfixQueueReport says how many messages Postfix's queue directories
// still hold, "" when none (or when there is no queue directory).
func postfixQueueReport(p map[string]string) string {
	dir := p["queue_directory"]
	if dir == "" {
		dir = "/var/spool/postfix"
	}
	var parts []string
	total := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		n := 0
		filepath.WalkDir(filepath.Join(dir, q), func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", q, n))
			total += n
		}
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("Postfix's queue (%s) still holds %d message(s): %s. "+
		"With Postfix running, postqueue -f sends them and postqueue -p lists them; "+
		"once relayq runs instead, relayq import-postfix --queue submits them to relayq (--queue --dry-run lists them)",
		dir, total, strings.Join(parts, ", "))
}

// parseGenerated checks the config import-postfix made, without reading
// the password file it names (which --dry-run does not write): pass
// stands in for pass_file.
func parseGenerated(text string) (*config.Config, error) {
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "pass_file = ") {
			line = `pass = "unread"`
		}
		kept = append(kept, line)
	}
	return config.Parse([]byte(strings.Join(kept, "\n")), "generated config")
}

// writeSecret writes the password file, mode 0600, owned by the relayq
// user when there is one (the daemon reads it).
func writeSecret(path, secret string) error {
	if err := writeFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	if u, err := user.Lookup("relayq"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return os.Chown(path, uid, gid)
	}
	return nil
}

// writeConfig writes the config (0644: sendmail reads it as any user),
// keeping an existing file as path.bak.
func writeConfig(path, text string) error {
	if old, err := os.ReadFile(path); err == nil {
		if err := writeFileAtomic(path+".bak", old, 0o644); err != nil {
			return err
		}
	}
	return writeFileAtomic(path, []byte(text), 0o644)
}

// writeFileAtomic writes a temporary file, fsyncs it, renames it over path
// and fsyncs the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
