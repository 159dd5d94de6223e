package main

import (
	"errors"
	"fmt"
	"io/fs"

	"relayq/config"
)

// loadConfig finds and loads the configuration for a client command
// (queue, dead, status, mailq), path "" meaning the default search. It does
// not read the daemon's secrets (pass_file, ca_file), which an ordinary
// user may not be able to read, and falls back to the built-in defaults
// when the file itself may not be read (loadPublicConfig). On failure it
// prints the error, which names the key and line, and returns EX_CONFIG.
func loadConfig(path string, env cmdEnv) (*config.Config, int) {
	return loadPublicConfig("relayq", path, env)
}

// loadConfigSource is loadConfig that also says which file was used (or
// "embedded default"), for the daemon's start-up log.
func loadConfigSource(path string, env cmdEnv) (*config.Config, string, int) {
	cfg, source, err := config.Find(path, env.Getenv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq: %v\n", err)
		return nil, "", exitConfig
	}
	return cfg, source, exitOK
}

// loadPublicConfig is loadConfig for the commands that every local user
// runs (sendmail, mailq), which need no secret: only where the sockets and
// the maildrop are, the host name and the size limit. A config file this
// user may not read (installed 0640 because it holds the relay password) is
// no reason to refuse a message: they go on with the built-in defaults,
// which name the system daemon's sockets and maildrop, and say so on
// stderr. Any other config error is still EX_CONFIG.
func loadPublicConfig(name, path string, env cmdEnv) (*config.Config, int) {
	cfg, _, err := config.FindForClient(path, env.Getenv)
	if err == nil {
		return cfg, exitOK
	}
	if !errors.Is(err, fs.ErrPermission) {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return nil, exitConfig
	}
	cfg, dErr := config.ClientDefault(env.Getenv)
	if dErr != nil {
		fmt.Fprintf(env.Stderr, "%s: %v; and the built-in default: %v\n", name, err, dErr)
		return nil, exitConfig
	}
	fmt.Fprintf(env.Stderr, "%s: warning: %v; using the built-in defaults (socket %s, maildrop %s). "+
		"Keep the relay's password in relay.auth.pass_file and the config readable by all (0644).\n",
		name, err, cfg.Submission.Socket, cfg.Submission.Maildrop)
	return cfg, exitOK
}
