package sendmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/cmd/internal/sysexits"
	"relayq/config"
	"relayq/queue"
	"relayq/spool"
)

// Env is what the command may touch of the outside world, so tests can
// run it in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Modes run what a sendmail command line asks for besides a message:
// -bp lists the queue (as mailq), -bi checks the aliases (as newaliases),
// -q flushes the queue (as relayq flush). relayq runs them itself; the
// sendmail-only binary hands them to relayq. Each takes the arguments of
// that command ("-c FILE" when sendmail had one) and returns its exit code.
type Modes struct {
	List, Aliases, Flush func(args []string, env Env) int

	// Standalone answers an SMTP session on standard input (-bs) when
	// the daemon's socket does not, and must be set: ServeStandalone.
	// relayq-sendmail hands such a call to relayq instead (Session.Words;
	// nothing has been read from standard input), so that it does not
	// link an SMTP server, a quarter of its size, for a rare case: the
	// smaller binary starts faster, at every message.
	Standalone func(s Session, env Env) int

	// Sendmail, when not nil, is the whole sendmail command run by a
	// program that reads the user and group databases through the C
	// library (NSS). relayq-sendmail, built without cgo, sets it to relayq
	// sendmail, and hands it every call whose config does not load here:
	// a socket_group or admin_group that is not in /etc/group may still be
	// one NSS knows, and then only relayq can tell (its own error, if it
	// is one, with its exit code). Nothing has been read from standard
	// input when it is called.
	Sendmail func(args []string, env Env) int

	// UserDB, when not nil, is asked before the call first relies on an
	// answer from the user or group database: this user's name for the
	// default sender, or a config whose loading looked one up
	// (config.Config.UserDB). False sends the whole call to Sendmail,
	// with nothing read from standard input yet. relayq-sendmail reads
	// the databases without the C library and sets it to whether its
	// answer is the C library's (userdb.go); most calls (-f SENDER, a
	// config naming no group by name, $HOME set) never ask.
	UserDB func() bool
}

// sendmailTimeout bounds the whole submission to the daemon.
const sendmailTimeout = 5 * time.Minute

const sendmailSynopsis = "usage: relayq sendmail [-c FILE] [-t] [-i] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID] [-v] [--] [RECIPIENT…]"

const sendmailHelp = sendmailSynopsis + `

Reads one message from standard input and hands it to relayq: over the
daemon's socket, or, when the daemon is not running, into the maildrop
directory it imports from when it starts. Exits 0 only once the message is
on disk.

  -c FILE      config file (else $RELAYQ_CONFIG, else /etc/relayq/config.toml);
               one this user may not read: the built-in defaults, with a warning
  -t           also take recipients from the To, Cc and Bcc headers (from
               Resent-To, -Cc and -Bcc in a resent message); Bcc and
               Resent-Bcc are removed
  -i, -oi      a line with a single "." does not end the message
  -f SENDER    envelope sender ("<>" for none; default USER@HOSTNAME)
  -F NAME      full name for an added From header
  -N DSN       delivery status notifications wanted for every recipient:
               never, or a comma-separated list of success, delay, failure
               (passed to the relay as NOTIFY= when it offers DSN)
  -R RET       how much of the message a notification returns: full or hdrs
  -V ENVID     an envelope ID for notifications (printable ASCII, ≤ 100)
  -v           print the queue ID
  -bm          deliver mail (the default)
  -bs          an SMTP session on standard input and output, submitted to
               the daemon (as with Postfix, for mail clients such as Alpine);
               with the daemon down, each message goes to the maildrop
  -bp          list the queue instead, as mailq does (Postfix's format)
  -bi, -I      check the aliases, as newaliases: [aliases] and its
               aliases_file, each error with its line (exit 65); relayq
               keeps no database (relayq reload applies a changed file)
  -q           make every queued message due now, as relayq flush does
               (-q with an interval, like -q30m, is ignored, as Postfix does)
  -o…, -od…, -U, -n, -m, -h N, -B …, -L …  accepted and ignored

Addresses without a domain ("root") are written user@[submission] hostname;
the daemon then applies [aliases] and gives them [rewrite] domain.

Exit status (sysexits): 0 queued; 64 usage; 65 bad message; 67 bad address
(or a recipient relayq refuses, 550 5.1.1);
75 temporary failure, try again; 78 bad config.
`

// sendmailArgs is a parsed sendmail command line.
type sendmailArgs struct {
	config  string
	opts    spool.PrepareOptions // From, FullName, ExtractRecipients, IgnoreDots, Recipients
	dsn     queue.DSN            // -R, -V
	notify  []string             // -N, for every recipient
	verbose bool
	help    bool
	mode    sendmailMode // -bp, -q: something else than submitting
}

// Run is `relayq sendmail` and /usr/sbin/sendmail: args are the words
// after the command's name; it returns the exit code.
func Run(args []string, env Env, modes Modes) int {
	a, err := parseSendmailArgs(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sendmail: %v\n%s\n", err, sendmailSynopsis)
		return sysexits.Usage
	}
	if a.help {
		fmt.Fprint(env.Stdout, sendmailHelp)
		return sysexits.OK
	}
	if a.mode != modeSubmit {
		return a.runMode(args, env, modes) // modes.go
	}
	cfg, code := a.publicConfig(args, env, modes)
	if cfg == nil {
		return code
	}
	o := a.opts
	if NeedsUser(o.From) {
		if !modes.userDB() {
			return modes.Sendmail(args, env)
		}
		o.User = LoginName(env)
	}
	o.Hostname = cfg.Submission.Hostname
	o.Now = time.Now()
	o.MaxSize = int64(cfg.Submission.MaxMessageSize)
	// The daemon accepts, greets and answers EHLO while the message is
	// read, for a message read within aheadFresh.
	conn := spool.Dial(cfg.Submission.Socket, min(aheadFresh, cfg.Submission.IdleTimeout.Duration/2))
	p, err := spool.Prepare(env.Stdin, o)
	if code := PrepareExit(err); code != sysexits.OK {
		conn.Close()
		fmt.Fprintf(env.Stderr, "sendmail: %v\n", err)
		return code
	}
	return submit(cfg, conn, a.envelope(p), p.Body, a.verbose, env)
}

// aheadFresh is how long a connection dialed before the message was read
// is used for it (spool.Dial): a program that writes its message at once
// (the common case) has it in well under a millisecond, and a slow one
// (a pipe from a long job, a user typing) gets a connection of its own
// once its message has come, as before, rather than hold one of the
// daemon's connections (max_connections_per_user) while it writes, or
// find it closed (idle_timeout).
const aheadFresh = 200 * time.Millisecond

// publicConfig loads the client flavour of the config (an ordinary user
// may not read the relay's secrets, nor perhaps the file: config.go). When
// it does not load and modes.Sendmail is set, or loading it looked up the
// user or group database and modes.UserDB says no, the call goes to
// Sendmail instead, and cfg is nil with its exit code; nothing of the
// failed load is printed then, as the other program says what it finds.
func (a *sendmailArgs) publicConfig(args []string, env Env, modes Modes) (cfg *config.Config, code int) {
	if modes.Sendmail == nil {
		return LoadPublicConfig("sendmail", a.config, env)
	}
	var stderr bytes.Buffer // a warning when it loads: printed below
	quiet := env
	quiet.Stderr = &stderr
	if cfg, code = LoadPublicConfig("sendmail", a.config, quiet); cfg == nil || cfg.UserDB && !modes.userDB() {
		return nil, modes.Sendmail(args, env)
	}
	stderr.WriteTo(env.Stderr)
	return cfg, code
}

// userDB reports whether this program's answers from the user and group
// databases may be relied on (Modes.UserDB; yes when it is not set).
func (m Modes) userDB() bool {
	return m.UserDB == nil || m.UserDB()
}

// PrepareExit maps spool.Prepare's errors to exit codes.
func PrepareExit(err error) int {
	switch {
	case err == nil:
		return sysexits.OK
	case errors.Is(err, spool.ErrBadMessage):
		return sysexits.DataErr
	case errors.Is(err, spool.ErrBadAddress):
		return sysexits.NoUser
	case errors.Is(err, spool.ErrNoRecipients):
		return sysexits.Usage
	default: // reading standard input failed
		return sysexits.IOErr
	}
}

// submit hands the message to the daemon on conn (or a new connection: see
// spool.Dial), or to the maildrop when the daemon's socket does not answer.
func submit(cfg *config.Config, conn *spool.Connection, envelope queue.Envelope, body []byte, verbose bool, env Env) int {
	sub := cfg.Submission
	ctx, cancel := context.WithTimeout(context.Background(), sendmailTimeout)
	defer cancel()
	id, err := conn.Submit(ctx, envelope, body)
	if err == nil {
		if verbose {
			fmt.Fprintf(env.Stdout, "queued as %s\n", id)
		}
		return sysexits.OK
	}
	if !errors.Is(err, spool.ErrUnreachable) {
		return refused(err, env)
	}
	// The maildrop keeps min_free as intake does (exit 75 below it).
	dropErr := spool.MaildropRoom(cfg.Queue.Path, sub.Maildrop, int64(cfg.Queue.MinFree))
	var name string
	if dropErr == nil {
		name, dropErr = spool.WriteMaildrop(sub.Maildrop, envelope, body)
	}
	if errors.Is(dropErr, fs.ErrPermission) {
		// socket_mode/socket_group keep this user out of the maildrop (and
		// of the socket, unless the daemon is down): trying again won't do.
		fmt.Fprintf(env.Stderr, "sendmail: this user may not submit mail: permission denied on relayq's maildrop %s (see [submission] socket_group); the socket: %v\n", sub.Maildrop, err)
		return sysexits.NoPerm
	}
	if dropErr != nil {
		fmt.Fprintf(env.Stderr, "sendmail: the relayq daemon is not reachable (%v), and the maildrop does not take the message either (%v); nothing was sent, try again later\n", err, dropErr)
		return sysexits.TempFail
	}
	if verbose {
		fmt.Fprintf(env.Stdout, "queued in the maildrop as %s (relayq is not running, or still starting; it takes the message once it runs)\n", name)
	}
	return sysexits.OK
}

// refused reports a submission the daemon did not accept: 4xx and lost
// connections are temporary; a 5xx is about the address (5.1.x) or the
// message.
func refused(err error, env Env) int {
	var reply *smtp.SMTPError
	if errors.As(err, &reply) {
		// The whole reply, enhanced code included (go-smtp's Error()
		// leaves it out): "452 4.7.0 Too many messages from uid 1000…".
		code := strconv.Itoa(reply.Code)
		if e := reply.EnhancedCode; e[0] > 0 {
			code += fmt.Sprintf(" %d.%d.%d", e[0], e[1], e[2])
		}
		fmt.Fprintf(env.Stderr, "sendmail: relayq refused the message: %s %s\n", code, reply.Message)
	} else {
		fmt.Fprintf(env.Stderr, "sendmail: %v\n", err)
	}
	switch {
	case errors.As(err, &reply) && reply.Code/100 == 5 && reply.EnhancedCode[0] == 5 && reply.EnhancedCode[1] == 1:
		return sysexits.NoUser
	case errors.As(err, &reply) && reply.Code/100 == 5:
		return sysexits.DataErr
	case errors.Is(err, spool.ErrBadAddress):
		return sysexits.NoUser
	default:
		return sysexits.TempFail
	}
}

// NeedsUser says whether Prepare will use the login name with this -f: for
// the default sender (no -f), and for the From field it adds to a message
// with the null sender (-f "<>"). Looking the user up is skipped otherwise,
// as it reads the user database (through NSS when relayq is built with cgo).
func NeedsUser(from string) bool {
	f := strings.TrimSpace(from)
	return f == "" || f == "<>"
}

// LoginName is the user running sendmail, for the default sender: from the
// user database, else $LOGNAME or $USER, else "uid<N>".
func LoginName(env Env) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, k := range []string{"LOGNAME", "USER"} {
		if v := env.Getenv(k); v != "" {
			return v
		}
	}
	return "uid" + strconv.Itoa(os.Getuid())
}

// parseSendmailArgs reads sendmail's command line the way getopt(3) does:
// flags may be bundled (-ti), a flag's argument may be attached (-fADDR) or
// the next word (-f ADDR), and the first word that is not a flag, or "--",
// ends the flags. The rest are recipients.
//
// Options that would change where relayq reads its config or writes a log
// (-C, -X) are refused, and so are modes other than -bm, -bs, -bp, -bi
// and queue runs (-q): sendmail's dangerous options stay out (the
// CVE-2016-10033 class of bug).
func parseSendmailArgs(args []string) (sendmailArgs, error) {
	var a sendmailArgs
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			a.opts.Recipients = append(a.opts.Recipients, args[i+1:]...)
			return a, nil
		case arg == "--help":
			a.help = true
			return a, nil
		case len(arg) < 2 || arg[0] != '-':
			a.opts.Recipients = append(a.opts.Recipients, args[i:]...)
			return a, nil
		}
		next, err := a.flags(arg[1:], args[i+1:])
		if err != nil {
			return a, err
		}
		i += next
	}
	return a, nil
}

// flags applies one word of bundled flags (without its "-"); rest are the
// words after it. It returns how many of them it used as an argument.
func (a *sendmailArgs) flags(word string, rest []string) (used int, err error) {
	for j := 0; j < len(word); j++ {
		c := word[j]
		switch c {
		case 't':
			a.opts.ExtractRecipients = true
			continue
		case 'i':
			a.opts.IgnoreDots = true
			continue
		case 'v':
			a.verbose = true
			continue
		case 'n', 'm', 'U', 'G': // no aliases, me too, initial submission, gateway: nothing to do
			continue
		case 'I': // initialise the aliases database: newaliases
			a.mode = modeAliases
			continue
		case 'C', 'X':
			return 0, fmt.Errorf("-%c is not supported (relayq's sendmail takes its config from -c FILE and logs nothing)", c)
		case 'q':
			return 0, a.queueRun(word[j+1:])
		case 'c', 'f', 'r', 'F', 'o', 'b', 'A', 'B', 'N', 'R', 'V', 'h', 'L', 'p', 'O':
		default:
			return 0, fmt.Errorf("unknown option -%c", c)
		}
		// c takes an argument: the rest of the word, or the next word.
		val := word[j+1:]
		if val == "" {
			if len(rest) == 0 {
				return 0, fmt.Errorf("option -%c needs an argument", c)
			}
			val, used = rest[0], 1
		}
		return used, a.option(c, val)
	}
	return 0, nil
}

// option applies a flag that takes an argument.
func (a *sendmailArgs) option(c byte, val string) error {
	switch c {
	case 'c':
		a.config = val
	case 'f', 'r':
		a.opts.From = val
	case 'F':
		a.opts.FullName = val
	case 'o':
		// -oi is -i; every other -o… (-odb, -odi, -oem, -oQ…) is ignored,
		// as Postfix does.
		if val == "i" {
			a.opts.IgnoreDots = true
		}
	case 'b':
		return a.bMode(val)
	case 'N', 'R', 'V':
		return a.dsnOption(c, val)
	}
	// A, B, h, L, p, O: body type requests, hop count, labels and options
	// relayq does not use; accepted and ignored.
	return nil
}
