// Package relayq is the module root. It holds only the embedded config
// files for package relayq/config (go:embed cannot reach "..", so the embeds
// live here): config.toml.example as [ExampleConfig], every key documented,
// and packaging/config.toml as [PackagedConfig], the package's
// /etc/relayq/config.toml, which config loads as the default config.
// Everything else is in the packages below: the configuration in config/,
// the commands in cmd/relayq.
package relayq
