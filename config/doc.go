// Package config is relayq's configuration file, and nothing else.
//
// It decodes one TOML file into a [Config] in one place: defaults first, then
// the file, then resolution (relative paths against the state directory, the
// relay url into its separate keys, the password file), then validation.
// Every other package takes a plain Options struct; only cmd/relayq imports
// this one.
//
// What it promises:
//   - An unknown key, a value of the wrong type and an impossible value are
//     errors, never ignored. Each error names the dotted key ("relay.port")
//     and, when the key is in the file, its line: "config.toml:12: relay.port:
//     70000 is not a port (1-65535)".
//   - Every key is documented, with its default, in config.toml.example, which
//     is built into the binary and is the config used when there is no file.
//   - A returned Config is complete: every default is filled in and every path
//     is absolute.
//   - [Config.LogValue] never shows a password.
//
// What it does not do: it opens no socket and no database, and creates no
// directory. Checks that need the network (can the relay be reached?) belong
// to `relayq verify`.
package config
