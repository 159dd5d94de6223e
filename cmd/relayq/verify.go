package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/config"
	"relayq/transport"
)

const verifySynopsis = `relayq verify [-c FILE] [--json] [--debug] [--relay ID] [--from ADDR --to ADDR[,ADDR…]]

Connects to each configured relay ([relay] and every [[relays]] entry; with
--relay, only the one with that id, "default" for [relay]) exactly as delivery does (same
connection, proxy, TLS and AUTH settings and code) and reports what it
found: the address connected to, the greeting, the EHLO extensions, the
TLS version, cipher suite and certificate (subject, issuer, expiry, whether
it verifies), and the AUTH mechanism used and whether it succeeded. Then
QUIT. It needs neither the daemon nor the queue, and sends no mail.

With --from and/or --to it goes further: MAIL FROM:<--from> (the null
sender <> when only --to is given), RCPT TO for every --to (repeat the
flag, or separate addresses with commas), then RSET and QUIT; never DATA.
A sender or recipient the relay will refuse shows up before real mail is
queued.

It reads the daemon's configuration, secrets included (relay.auth.pass_file,
relay.tls.ca_file…), so run it as the user the daemon runs as. With
--debug (or relay.debug = true) the conversation is logged to stderr, AUTH
redacted.

Exit status (with several relays, that of the first relay not ready):
  0   the relay is ready (and accepted the sender and every recipient)
  64  bad flags, or an address relayq would not send
  69  the relay cannot be reached (connection, TLS, certificate, protocol
      failure) or refused permanently (5xx to the greeting, EHLO, MAIL FROM
      or a RCPT TO)
  75  the relay answered with a temporary failure (4xx); try again later
  77  the relay rejected the credentials (5xx to AUTH)
  78  the configuration is wrong, or does not fit the relay (no usable AUTH
      mechanism, or credentials that would go in clear)

--json prints one JSON object: {"ready": bool, "exit": N, "relays": [ ... ]},
one element per relay with the same facts and, when not ready, "error".

Flags:`

func runVerify(args []string, env cmdEnv) int {
	fs := newFlags("verify", verifySynopsis, env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print one JSON object")
	debug := fs.Bool("debug", false, "log the SMTP conversation to stderr (as relay.debug = true)")
	only := fs.String("relay", "", "check only the relay with this `id` (\"default\" for [relay])")
	from := fs.String("from", "", "MAIL FROM `address` to try (\"\" with --to: the null sender)")
	var to addressList
	fs.Var(&to, "to", "RCPT TO `address`(es) to try; repeat or separate with commas")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "relayq verify: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, _, code := loadConfigSource(*cfgPath, env)
	if code != exitOK {
		return code
	}
	var envelope *transport.Envelope
	fromSet := false
	fs.Visit(func(f *flag.Flag) { fromSet = fromSet || f.Name == "from" })
	if fromSet || len(to) > 0 {
		envelope = &transport.Envelope{From: *from, To: to}
	}
	list := cfg.RelayList()
	if *only != "" {
		list = slices.DeleteFunc(slices.Clone(list), func(r config.NamedRelay) bool { return r.ID != *only })
		if len(list) == 0 {
			fmt.Fprintf(env.Stderr, "relayq verify: no relay has id %q\n", *only)
			return exitUsage
		}
	}
	single := len(cfg.RelayList()) == 1 && len(cfg.Relays) == 0
	var results []relayResult
	exit := exitOK
	for _, r := range list {
		result, code := verifyRelay(r, single, *debug, envelope, cfg.Log, env)
		if code == exitConfig && result == nil {
			return exitConfig
		}
		results = append(results, *result)
		if exit == exitOK {
			exit = result.Exit
		}
	}
	if *asJSON {
		return printVerifyJSON(env.Stdout, results)
	}
	for _, result := range results {
		printVerify(env.Stdout, result, time.Now())
	}
	return exit
}

// verifyRelay checks one relay; a nil result means its options are wrong
// (reported on stderr).
func verifyRelay(r config.NamedRelay, single, debug bool, envelope *transport.Envelope, logCfg config.LogConfig, env cmdEnv) (*relayResult, int) {
	r.Debug = r.Debug || debug
	opts, name, err := transportOptions(r.RelayConfig, newLogger(logCfg, env.Stderr))
	if !single {
		name = r.ID + " (" + name + ")"
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq verify: %s: %v\n", r.ID, err)
		return nil, exitConfig
	}
	tr := transport.New(opts)
	defer tr.Close()
	rep, err := tr.Verify(context.Background(), envelope)
	result := relayResult{Name: name, Report: rep, Ready: err == nil, Exit: verifyExit(rep, err)}
	if err != nil {
		result.Error = newVerifyError(err)
		fmt.Fprintf(env.Stderr, "relayq verify: %s: not ready: %s\n", name, result.Error.Text)
	}
	return &result, result.Exit
}

// addressList is the --to flag: repeatable, each value a comma-separated
// list.
type addressList []string

func (l *addressList) String() string { return strings.Join(*l, ",") }

func (l *addressList) Set(s string) error {
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a == "" {
			return errors.New("empty address")
		}
		*l = append(*l, a)
	}
	return nil
}

// relayResult is what verify says about one relay.
type relayResult struct {
	Name  string       `json:"relay"` // smtp://host:port, as the daemon logs it
	Ready bool         `json:"ready"`
	Exit  int          `json:"exit"`
	Error *verifyError `json:"error,omitempty"`
	*transport.Report
}

// verifyExit is the exit status for a Verify result (see verifySynopsis).
func verifyExit(rep *transport.Report, err error) int {
	var le *transport.LocalError
	var te *transport.Error
	var se *smtp.SMTPError
	errors.As(err, &te)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &le):
		return exitUsage
	case errors.Is(err, transport.ErrInsecureAuth), errors.Is(err, transport.ErrAuthUnavailable):
		return exitConfig
	case !errors.As(err, &se):
		return exitUnavailable
	case te != nil && te.Stage == transport.StageAuth && se.Code >= 500:
		return exitNoPerm
	case se.Code >= 500 || refusedPermanently(rep):
		return exitUnavailable
	}
	return exitTempFail
}

// refusedPermanently: some recipient got a 5xx (Verify's error is only the
// first refusal, which may be a 4xx).
func refusedPermanently(rep *transport.Report) bool {
	for _, r := range rep.Rcpt {
		if !r.OK && strings.HasPrefix(r.Reply, "5") {
			return true
		}
	}
	return false
}

// printVerify writes the report for people, one fact a line.
func printVerify(w io.Writer, r relayResult, now time.Time) {
	rep := r.Report
	line := func(key, format string, args ...any) {
		text := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "\n             ")
		fmt.Fprintf(w, "%-12s %s\n", key, text)
	}
	line("relay", "%s", r.Name)
	if rep.Proxy != "" {
		line("proxy", "%s", rep.Proxy)
	}
	if rep.Connected != "" {
		line("connected", "%s", rep.Connected)
	}
	if rep.Greeting != "" {
		line("greeting", "%s", rep.Greeting)
	}
	if len(rep.Extensions) > 0 {
		line("extensions", "%s", strings.Join(rep.Extensions, ", "))
	}
	printTLS(line, rep, now)
	if a := rep.Auth; a != nil {
		status := "ok"
		if !a.OK {
			status = "FAILED"
		}
		mech := a.Mechanism
		if mech == "" {
			mech = "(none usable)"
		}
		line("auth", "%s as %s: %s", mech, a.User, strings.TrimSpace(status+" "+a.Reply))
	}
	if m := rep.Mail; m != nil {
		line("mail from", "<%s>: %s", m.Address, m.Reply)
	}
	for _, rc := range rep.Rcpt {
		line("rcpt to", "<%s>: %s", rc.Address, rc.Reply)
	}
	if r.Ready {
		line("result", "ready")
	} else {
		line("result", "NOT READY (exit %d): %s", r.Exit, r.Error.Text)
	}
}

func printTLS(line func(key, format string, args ...any), rep *transport.Report, now time.Time) {
	t := rep.TLS
	if t == nil {
		if rep.Greeting != "" {
			line("tls", "none: the session is in clear")
		}
		return
	}
	how := "implicit TLS"
	if t.STARTTLS {
		how = "STARTTLS"
	}
	if t.Version != "" {
		line("tls", "%s, %s (%s)", t.Version, t.CipherSuite, how)
	}
	if t.Subject == "" && t.VerifyError == "" {
		return
	}
	line("certificate", "%s, issued by %s", t.Subject, t.Issuer)
	if names := append(slices.Clone(t.DNSNames), t.IPAddresses...); len(names) > 0 {
		line("names", "%s", strings.Join(names, ", "))
	}
	line("expires", "%s (%s)", t.NotAfter.UTC().Format(time.RFC3339), expiresIn(t.NotAfter, now))
	switch {
	case t.Verified:
		line("verified", "yes, for %s", t.ServerName)
	case t.Enforced:
		line("verified", "NO, refused: %s", t.VerifyError)
	default:
		line("verified", "NO, but accepted (reject_unauthorized = false): %s", t.VerifyError)
	}
}

func expiresIn(notAfter, now time.Time) string {
	d := notAfter.Sub(now)
	switch {
	case d < 0:
		return "EXPIRED " + (-d).Round(time.Minute).String() + " ago"
	case d < 48*time.Hour:
		return "in " + d.Round(time.Minute).String()
	}
	return fmt.Sprintf("in %d days", int(d.Hours()/24))
}
