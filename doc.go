// Package relayq is the module root. It holds only config.toml.example,
// embedded as [ExampleConfig] for package relayq/config, which loads it as
// the default config (go:embed cannot reach "..", so the embed lives beside
// the file). Everything else is in the packages below: the configuration in
// config/, the commands in cmd/relayq.
package relayq
