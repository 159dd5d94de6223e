package main

import (
	"fmt"

	"relayq/cmd/internal/sendmail"
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
// runs (sendmail, mailq, newaliases): sendmail.LoadPublicConfig, which
// relayq-sendmail shares.
func loadPublicConfig(name, path string, env cmdEnv) (*config.Config, int) {
	return sendmail.LoadPublicConfig(name, path, sendmail.Env(env))
}
