package main

import (
	"fmt"

	"relayq"
)

// loadConfig finds and loads the configuration for a client command
// (sendmail, queue, dead), path "" meaning the default search. It does not
// read the daemon's secrets (pass_file, ca_file), which an ordinary user may
// not be able to read. On failure it prints the error, which names the key
// and line, and returns EX_CONFIG.
func loadConfig(path string, env cmdEnv) (*relayq.Config, int) {
	cfg, _, err := relayq.FindForClient(path, env.Getenv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq: %v\n", err)
		return nil, exitConfig
	}
	return cfg, exitOK
}

// loadConfigSource is loadConfig that also says which file was used (or
// "embedded default"), for the daemon's start-up log.
func loadConfigSource(path string, env cmdEnv) (*relayq.Config, string, int) {
	cfg, source, err := relayq.Find(path, env.Getenv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq: %v\n", err)
		return nil, "", exitConfig
	}
	return cfg, source, exitOK
}
