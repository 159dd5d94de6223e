// Package rewrite holds relayq's address and header rules: qualification of
// addresses without a domain, local aliases (inline or from an
// /etc/aliases-style file), admin_address, the sender policy (envelope
// sender, From header, masquerading) and the [defaults] header fields.
//
// Everything here is a pure function of Options and its arguments: the
// daemon's intake (socket, listeners, maildrop import) and `relayq rewrite
// --dry-run` call the same Rules, so the dry run prints exactly what the
// relay will receive.
//
// What it promises:
//   - Header edits touch only the header block; the body's bytes are kept
//     exactly. A field that is not rewritten keeps its bytes, folding
//     included; a rewritten or added field goes at the same place or at the
//     end of the header.
//   - relayq never delivers locally: an alias to a pipe, a file or an
//     :include: is refused with the file and line, never run.
//   - Alias expansion ends: a loop is an error naming the chain.
//
// What it does not do: rewrite addresses in To, Cc or other recipient
// header fields (they are shown as written), or look anything up on the
// network.
package rewrite
