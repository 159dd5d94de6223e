package relayq

import _ "embed"

// ExampleConfig is config.toml.example, which documents every key with its
// default: relayq.toml(5) is made from it, and the package installs it as
// /usr/share/doc/relayq/config.toml.example.
//
//go:embed config.toml.example
var ExampleConfig []byte

// PackagedConfig is packaging/config.toml, the Debian package's
// /etc/relayq/config.toml: only what differs from the built-in defaults
// (the relay's url), so that sendmail, which parses the config at every
// message, decodes one key rather than config.toml.example's 72. Package
// config loads it as the config used when there is no file; it loads to
// the same Config as ExampleConfig (config's TestPackagedConfigIsTheExample).
//
//go:embed packaging/config.toml
var PackagedConfig []byte
