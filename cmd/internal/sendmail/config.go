package sendmail

import (
	"errors"
	"fmt"
	"io/fs"

	"relayq/cmd/internal/sysexits"
	"relayq/config"
)

// LoadPublicConfig finds and loads the configuration for the commands
// that every local user runs (sendmail, mailq, newaliases), path ""
// meaning the default search; name begins its messages. They need no
// secret (pass_file, ca_file, which it does not read): only where the
// sockets and the maildrop are, the host name and the size limit. A
// config file this user may not read (installed 0640 because it holds the
// relay password) is no reason to refuse a message: they go on with the
// built-in defaults, which name the system daemon's sockets and maildrop,
// and say so on stderr. Any other config error is printed (it names the
// key and line) and returns EX_CONFIG.
func LoadPublicConfig(name, path string, env Env) (*config.Config, int) {
	cfg, _, err := config.FindForClient(path, env.Getenv)
	if err == nil {
		return cfg, sysexits.OK
	}
	if !errors.Is(err, fs.ErrPermission) {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return nil, sysexits.Config
	}
	cfg, dErr := config.ClientDefault(env.Getenv)
	if dErr != nil {
		fmt.Fprintf(env.Stderr, "%s: %v; and the built-in default: %v\n", name, err, dErr)
		return nil, sysexits.Config
	}
	fmt.Fprintf(env.Stderr, "%s: warning: %v; using the built-in defaults (socket %s, maildrop %s). "+
		"Keep the relay's password in relay.auth.pass_file and the config readable by all (0644).\n",
		name, err, cfg.Submission.Socket, cfg.Submission.Maildrop)
	return cfg, sysexits.OK
}
