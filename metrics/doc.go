// Package metrics owns relayq's Prometheus exposition: the one place in
// relayq that imports client_golang. The packages that count (spool,
// delivery, queue, transport) keep plain figures (atomic counters,
// snapshots, the queue's Summarize) and know nothing of Prometheus; this
// package turns them into metrics at scrape time, in a private registry
// (not client_golang's global default: nothing else in the binary can add
// to it) with the Go runtime and process collectors, and serves it.
//
// Only relayq's daemon links it (cmd/relayq imports it; deps_test.go keeps
// it so): client_golang's package init (its default registry, procfs's
// package-level regexps, protobuf's detrand reading /proc/self/exe) costs
// over a millisecond, which `relayq sendmail` must not pay at every call.
//
// The names, types, labels and help texts are relayq's interface with
// dashboards and alert rules (docs/monitoring): they do not change.
package metrics
