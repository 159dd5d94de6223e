package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"relayq/cmd/internal/sendmail"
	"relayq/delivery"
	"relayq/queue"
	"relayq/rewrite"
	"relayq/spool"
)

const rewriteSynopsis = "relayq rewrite --dry-run [-c FILE] [-f SENDER] [-F NAME] [-t] RCPT... < message"

// runRewrite is `relayq rewrite --dry-run`: it reads a message as sendmail
// does, applies [rewrite], [aliases] and [defaults] with exactly the code
// the daemon uses, and prints the envelope and the header as the relay will
// get them (after the Received line the daemon puts first), one part per
// route: the route's name, its relays in failover order, and the part's
// envelope and header after the route's sender policy. It sends
// nothing and needs no daemon. Exit 67 when a recipient would be refused.
func runRewrite(args []string, env cmdEnv) int {
	fs := newFlags("rewrite", rewriteSynopsis, env)
	cfgPath := fs.String("c", "", "configuration `file`")
	dry := fs.Bool("dry-run", false, "print what would be sent (the only mode)")
	from := fs.String("f", "", "envelope `sender`, as sendmail -f (default: your login name)")
	name := fs.String("F", "", "full `name` for a From header that is added, as sendmail -F")
	extract := fs.Bool("t", false, "recipients also from To, Cc and Bcc, as sendmail -t")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if !*dry {
		fmt.Fprintf(env.Stderr, "relayq rewrite: only --dry-run is supported\nusage: %s\n", rewriteSynopsis)
		return exitUsage
	}
	cfg, code := loadPublicConfig("relayq rewrite", *cfgPath, env)
	if code != exitOK {
		return code
	}
	rw, err := newRewriting(cfg, newLogger(cfg.Log, env.Stderr))
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq rewrite: %v\n", err)
		return exitConfig
	}
	o := spool.PrepareOptions{From: *from, FullName: *name, ExtractRecipients: *extract, Recipients: fs.Args(),
		IgnoreDots: true, Hostname: cfg.Submission.Hostname, Now: time.Now(), MaxSize: int64(cfg.Submission.MaxMessageSize)}
	if sendmail.NeedsUser(o.From) {
		o.User = sendmail.LoginName(sendmail.Env(env))
	}
	p, err := spool.Prepare(env.Stdin, o)
	if code := sendmail.PrepareExit(err); code != exitOK {
		fmt.Fprintf(env.Stderr, "relayq rewrite: %v\n", err)
		return code
	}
	e, body, err := rw.Apply(queue.Envelope{From: p.From, Recipients: p.Recipients}, p.Body)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq rewrite: %v (intake answers 550 5.1.1; sendmail exits 67)\n", err)
		return exitNoUser
	}
	routes, senders, err := routing(cfg) // routing.go: as the daemon builds them
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq rewrite: %v\n", err)
		return exitConfig
	}
	parts, err := delivery.Relay{Routes: routes, Senders: senders}.Plan(e.From, e.Recipients, body)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq rewrite: %v\n", err)
		return exitSoftware
	}
	for i, p := range parts {
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		fmt.Fprintf(env.Stdout, "== route %q: relays %s\n", p.Route, strings.Join(p.Relays, ", "))
		fmt.Fprintf(env.Stdout, "MAIL FROM:<%s>\n", p.From)
		for _, r := range p.Rcpts {
			fmt.Fprintf(env.Stdout, "RCPT TO:<%s>\n", r)
		}
		header, rest, _ := strings.Cut(string(p.Body), "\r\n\r\n")
		fmt.Fprintf(env.Stdout, "\n%s\n\n(body: %d bytes, sent as they are)\n", strings.ReplaceAll(header, "\r\n", "\n"), len(rest))
	}
	return exitOK
}

// runNewaliases is newaliases, sendmail -bi and sendmail -I. relayq keeps
// no aliases database: it checks [aliases] and the aliases_file, reporting
// each error with its line (exit 65), or a config error (78). With no
// aliases file and valid aliases it says nothing and exits 0 (Debian's
// maintainer scripts call it after installing an MTA, and abort when it
// fails). Options other than -c (-oA… for another file) are ignored.
func runNewaliases(args []string, env cmdEnv) int {
	path := ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-h" || a == "--help":
			fmt.Fprintln(env.Stdout, "usage: newaliases [-c FILE]   (also: relayq newaliases, sendmail -bi, sendmail -I)\nChecks [aliases] and its aliases_file; each error names the file and line.")
			return exitOK
		case a == "-c" && i+1 < len(args):
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "-c="):
			path = strings.TrimPrefix(a, "-c=")
		}
	}
	cfg, code := loadPublicConfig("newaliases", path, env)
	if code != exitOK {
		return code
	}
	if f := cfg.Aliases.File; f != "" {
		if _, err := rewrite.LoadAliases(f); err != nil {
			fmt.Fprintf(env.Stderr, "newaliases: %v\n", err)
			return exitDataErr
		}
	}
	o, err := rewriteOptions(cfg, hostNames{host: "localhost", short: "localhost", fqdn: "localhost"})
	if err == nil {
		_, err = rewrite.New(o)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "newaliases: %v\n", err)
		if errors.Is(err, rewrite.ErrLoop) {
			return exitDataErr
		}
		return exitConfig
	}
	return exitOK
}
