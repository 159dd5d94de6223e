package relayq

import _ "embed"

// ExampleConfig is config.toml.example, which documents every key with its
// default. Package config loads it as the config used when there is no file;
// nothing else reads it.
//
//go:embed config.toml.example
var ExampleConfig []byte
