package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"relayq/control"
	"relayq/queue"
)

// runBackup is `relayq backup PATH`: a copy of the queue file as one
// commit left it, taken while the daemon runs (it writes into a file this
// command creates and passes it over the control socket) or, with the
// daemon stopped, from the file itself (queue.SaveBackup). The copy is
// checked before it replaces PATH.
//
// Exit codes: 0 written; 64 usage; 65 the copy failed its check; 66 there
// is no queue file; 73 PATH cannot be created; 74 no room for the copy, or
// another I/O error; 75 the daemon failed to take it; 77 no permission.
func runBackup(args []string, env cmdEnv) int {
	const name = "backup"
	fs := newFlags(name, "relayq backup [-c FILE] PATH\n"+
		"Writes a copy of the queue file to PATH (mode 0600; an existing PATH is replaced once the copy\n"+
		"is complete and checked). While relayq serve runs, the daemon makes the copy without stopping:\n"+
		"it holds every message acknowledged before the backup began. To restore one, stop relayq,\n"+
		"put the copy in the queue file's place (owner the daemon's user, mode 0600) and start it: the\n"+
		"messages in it that were delivered after the backup are sent again.", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	rest, code, done := parseArgs(fs, args, env)
	switch {
	case done:
		return code
	case len(rest) != 1:
		fmt.Fprintf(env.Stderr, "relayq %s: give one PATH to write the backup to\n", name)
		return exitUsage
	}
	path := rest[0]
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		fmt.Fprintf(env.Stderr, "relayq %s: %s is a directory; name the file to write\n", name, path)
		return exitUsage
	}
	cfg, code := loadConfig(*cfgPath, env)
	if code != exitOK {
		return code
	}
	if sameFile(path, cfg.Queue.Path) {
		fmt.Fprintf(env.Stderr, "relayq %s: %s is the queue file itself\n", name, path)
		return exitUsage
	}
	var resp *control.Response
	var askErr error
	offline := false
	res, err := queue.SaveBackup(path, func(f *os.File) (queue.BackupResult, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
		defer cancel()
		resp, askErr = control.CallWithFile(ctx, cfg.Control.Socket, control.Request{Op: control.OpBackup}, f)
		switch {
		case askErr == nil && resp.Backup != nil:
			return *resp.Backup, nil
		case askErr != nil && !errors.Is(askErr, control.ErrNotRunning):
			return queue.BackupResult{}, askErr
		}
		offline = true
		return queue.BackupFile(cfg.Queue.Path, f, maintenanceLockTimeout)
	})
	if err != nil {
		return backupError(name, path, cfg.Queue.Path, resp, askErr, err, env)
	}
	how := "while relayq runs"
	if offline {
		how = "from the stopped queue"
	}
	fmt.Fprintf(env.Stdout, "%s: backup of %s taken %s in %s: %d message(s), %d dead letter(s), %s (checked)\n",
		path, cfg.Queue.Path, how, res.Took.Round(time.Millisecond), res.Messages, res.Dead, byteSize(res.Size))
	return exitOK
}

// backupError explains why no backup was written and returns the exit
// code.
func backupError(name, path, queuePath string, resp *control.Response, askErr, err error, env cmdEnv) int {
	switch {
	case askErr != nil && errors.Is(err, askErr):
		if resp != nil && resp.Code == control.CodeFull {
			fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, askErr)
			return exitIOErr
		}
		return askFailed(name, resp, askErr, env)
	case errors.Is(err, queue.ErrFull):
		fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, err)
		return exitIOErr
	case errors.Is(err, queue.ErrDamaged):
		fmt.Fprintf(env.Stderr, "relayq %s: %v\n%s is left as it was.\n", name, err, path)
		return exitDataErr
	case errors.Is(err, queue.ErrBackupNotCreated):
		fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, err)
		return exitCantCreate
	}
	return maintenanceError(name, queuePath, err, env)
}

// sameFile reports whether paths a and b name one existing file (links
// and relative paths followed).
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
