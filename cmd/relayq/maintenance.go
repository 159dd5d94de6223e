package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"relayq/control"
	"relayq/queue"
)

// Offline maintenance: `relayq queue check` and `relayq compact` (and
// `relayq backup`, backup.go) are the only commands besides serve that
// open the database file. They take
// bbolt's file lock, waiting at most maintenanceLockTimeout for it, so
// they refuse while the daemon runs, and the daemon cannot start while
// they do. `relayq compact` first asks a running daemon to compact the
// file itself (queue.Queue.Compact), and opens the file only when none
// answers.
//
// Exit codes: 0 done (check: the file is sound); 65 the file is damaged;
// 66 there is no queue file; 75 the daemon is running (stop it first), or
// its compaction failed; 77 no permission to read (or replace) the file,
// or to use the control socket; 74 another I/O error.

const maintenanceLockTimeout = 500 * time.Millisecond

// maintenanceTarget parses an offline command's flags (-c FILE, no
// arguments) and returns the queue file its configuration names. When done,
// the command ends with code (after --help, a usage or a config error).
func maintenanceTarget(name, usage string, args []string, env cmdEnv) (path string, code int, done bool) {
	fs := newFlags(name, usage, env)
	cfgPath := fs.String("c", "", "configuration `file`")
	if code := noArgs(name, fs, args, env); code >= 0 {
		return "", code, true
	}
	cfg, code := loadConfig(*cfgPath, env)
	if code != exitOK {
		return "", code, true
	}
	return cfg.Queue.Path, exitOK, false
}

// runQueueCheck is `relayq queue check`: a read-only integrity check of the
// database file (bbolt's page check and relayq's own, see queue.CheckFile).
func runQueueCheck(args []string, env cmdEnv) int {
	const name = "queue check"
	path, code, done := maintenanceTarget(name, "relayq queue check [-c FILE]\n"+
		"Checks the queue file while relayq is stopped, without changing it. Exits 0 when it is sound,\n"+
		"65 when it is damaged (and says how to recover), 75 when the daemon is running.", args, env)
	if done {
		return code
	}
	problems, err := queue.CheckFile(path, maintenanceLockTimeout)
	if err != nil {
		return maintenanceError(name, path, err, env)
	}
	if len(problems) == 0 {
		fmt.Fprintf(env.Stdout, "%s: ok\n", path)
		return exitOK
	}
	fmt.Fprintf(env.Stdout, "%s: %d problem(s):\n", path, len(problems))
	damaged, empty, freelist := false, false, true
	for _, p := range problems {
		fmt.Fprintf(env.Stdout, "  %v\n", p)
		damaged = damaged || !errors.Is(p, queue.ErrInconsistent)
		empty = empty || errors.Is(p, queue.ErrEmpty)
		freelist = freelist && errors.Is(p, queue.ErrFreelistDamaged)
	}
	fmt.Fprintln(env.Stdout)
	switch {
	case empty:
		printEmptyAdvice(env.Stdout, path)
	case freelist:
		printFreelistAdvice(env.Stdout, path)
	case damaged:
		printDamageAdvice(env.Stdout, path)
	default:
		printInconsistencyAdvice(env.Stdout)
	}
	return exitDataErr
}

func printEmptyAdvice(w io.Writer, path string) {
	fmt.Fprintf(w, `The file holds nothing: not even an empty queue (relayq leaves a file of 0 bytes only if it is
killed while creating it). relayq serve sets it aside as %[1]s.empty.<time>, logs an
ERROR and starts a new, empty queue. If messages were queued, the file was truncated or badly
restored: restore %[1]s from a backup before starting relayq.
`, path)
}

func printFreelistAdvice(w io.Writer, path string) {
	fmt.Fprintf(w, `Only the freelist saved at the last clean stop is damaged (bbolt would hand out pages in use);
the messages are not. relayq serve refuses to start on it. To recover, with relayq stopped:
  cp -p %[1]s %[1]s.damaged && relayq compact
compact rewrites the file without the freelist; then start relayq again.
`, path)
}

func printDamageAdvice(w io.Writer, path string) {
	fmt.Fprintf(w, `The file is damaged: bbolt cannot read all of it, and relayq serve refuses to start on it.
To recover:
  1. Keep relayq stopped, and keep a copy of the file: cp -p %[1]s %[1]s.damaged
  2. Restore %[1]s from a backup if you have one. Otherwise move it aside
     (mv %[1]s %[1]s.damaged): relayq serve then starts with an empty queue.
     Mail submitted meanwhile waits in the maildrop and is not lost; the
     messages in the damaged file are not delivered.
  3. bbolt's own tool (go.etcd.io/bbolt/cmd/bbolt: check, pages, surgery) can
     inspect the copy and salvage what is readable.
`, path)
}

func printInconsistencyAdvice(w io.Writer) {
	fmt.Fprint(w, `bbolt reads the file without trouble, but relayq's records disagree; relayq serve still starts.
  - A message with no schedule entry is never tried: relayq queue retry ID schedules it again.
  - Orphaned bodies and index entries only take space.
  - A damaged key (its bytes in hex) names no message: relayq skips it.
  - A message record that does not decode is listed as damaged and never delivered:
    relayq queue expire ID keeps its body as a dead letter; relayq queue delete ID drops it.
  - A body that fails its checksum is never sent: delivery moves the message to the dead
    letters (reason corrupt), where relayq dead show ID --body shows what is left of it.
    Damaged records and corrupt bodies point at the disk or at something writing to the file.
Otherwise, please report it as a bug, with the output above.
`)
}

// runCompact is `relayq compact`: rewrites the database file into a new,
// compact one and swaps it in atomically (see queue.CompactFile).
func runCompact(args []string, env cmdEnv) int {
	const name = "compact"
	fs := newFlags(name, "relayq compact [-c FILE]\n"+
		"Rewrites the queue file without its free space and swaps the copy in atomically, keeping the\n"+
		"file's mode and owner. Every message, dead letter and history record is kept. While relayq serve\n"+
		"runs, it asks the daemon, which compacts the file without stopping (it also does so by itself once\n"+
		"the file is mostly free pages: [queue] compact_free); otherwise it works on the file itself.", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	if code := noArgs(name, fs, args, env); code >= 0 {
		return code
	}
	cfg, code := loadConfig(*cfgPath, env)
	if code != exitOK {
		return code
	}
	path := cfg.Queue.Path
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	resp, err := control.Call(ctx, cfg.Control.Socket, control.Request{Op: control.OpCompact})
	switch {
	case err == nil && resp.Compacted != nil:
		fmt.Fprintf(env.Stdout, "%s: compacted from %s to %s while relayq runs (commits waited %s)\n",
			path, byteSize(resp.Compacted.SizeBefore), byteSize(resp.Compacted.SizeAfter), resp.Compacted.Swap.Round(time.Millisecond))
		return exitOK
	case err != nil && !errors.Is(err, control.ErrNotRunning):
		return askFailed(name, resp, err, env)
	}
	res, err := queue.CompactFile(path, maintenanceLockTimeout)
	if err != nil {
		return maintenanceError(name, path, err, env)
	}
	fmt.Fprintf(env.Stdout, "%s: compacted from %s to %s; kept %d message(s), %d dead letter(s), %d history record(s)\n",
		path, byteSize(res.SizeBefore), byteSize(res.SizeAfter), res.Keys["messages"], res.Keys["dead"], res.Keys["archive"])
	return exitOK
}

// maintenanceError explains why the file could not be checked or
// compacted and returns the exit code.
func maintenanceError(name, path string, err error, env cmdEnv) int {
	switch {
	case errors.Is(err, queue.ErrLocked):
		fmt.Fprintf(env.Stderr, "relayq %s: the daemon is running (it holds %s); stop it first (systemctl stop relayq)\n", name, path)
		return exitTempFail
	case errors.Is(err, queue.ErrDamaged), errors.Is(err, queue.ErrEmpty):
		fmt.Fprintf(env.Stderr, "relayq %s: %v\nrelayq queue check says more, and how to recover.\n", name, err)
		return exitDataErr
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(env.Stderr, "relayq %s: there is no queue file at %s (relayq serve creates it)\n", name, path)
		return exitNoInput
	case errors.Is(err, os.ErrPermission):
		fmt.Fprintf(env.Stderr, "relayq %s: %v (run it as the daemon's user, or root)\n", name, err)
		return exitNoPerm
	}
	fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, err)
	return exitIOErr
}

// noArgs parses flags for a command that takes no arguments; it returns
// the exit code when the command should stop, else -1.
func noArgs(name string, fs *flag.FlagSet, args []string, env cmdEnv) int {
	rest, code, done := parseArgs(fs, args, env)
	switch {
	case done:
		return code
	case len(rest) > 0:
		fmt.Fprintf(env.Stderr, "relayq %s: unexpected argument %q\n", name, rest[0])
		return exitUsage
	}
	return -1
}

// startupHint is what relayq serve adds to a start-up failure the
// operator can act on.
func startupHint(err error) string {
	if errors.Is(err, queue.ErrFreelistDamaged) {
		return "the queue file's saved freelist is damaged (its messages are not): with relayq stopped, run `relayq compact`, which rewrites the file without it, then start relayq again"
	}
	if errors.Is(err, queue.ErrDamaged) {
		return "the queue file is damaged and relayq will not start on it; with relayq stopped, run `relayq queue check` to see what is wrong and how to recover"
	}
	return ""
}
